// The bearer tokens every test gateway is configured with, one per scope and one with all
// three. This module imports nothing, so the child-process helpers (daemon-process.ts) can
// use it without loading the daemon into the test process.

export const PUSH_TOKEN = 'test-push-token-0123456789';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const SYNC_TOKEN = 'test-sync-token-0123456789';
export const ALL_TOKEN = 'test-all-scopes-token-0123456789';

/** The `auth.tokens` entries of the test configuration. */
export const TEST_TOKENS = [
  { name: 'pipeline', token: PUSH_TOKEN, scopes: ['push'] },
  { name: 'operator', token: ADMIN_TOKEN, scopes: ['admin'] },
  { name: 'downstream', token: SYNC_TOKEN, scopes: ['sync'] },
  { name: 'root', token: ALL_TOKEN, scopes: ['push', 'admin', 'sync'] },
];
