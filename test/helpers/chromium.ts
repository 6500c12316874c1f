import { chromium, type BrowserContext } from 'playwright-core';
import { tempDir, type HasTeardown } from './harness.ts';

/** Debian's Chromium, headless, in a fresh profile closed in the teardown (tests that use it need testNeeding('chromium')). */
export async function headlessChromium(t: HasTeardown, options: Parameters<typeof chromium.launchPersistentContext>[1] = {}): Promise<BrowserContext> {
  const profile = await tempDir(t, 'modelferry-chromium-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ...options,
  });
  t.teardown(() => context.close());
  return context;
}
