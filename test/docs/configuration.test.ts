import { readFileSync } from 'node:fs';
import test from 'ava';
import type { z } from 'zod';
import { configSchema } from '../../daemon/config/schema.ts';

// docs/configuration.md lists every configuration key, as the error table lists every error
// code: a key added to the schema without its line there fails here.

const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

/** The object schema under refinements and pipes. */
function objectOf(schema: z.ZodType): z.ZodObject | undefined {
  let current: z.ZodType | undefined = schema;
  for (let depth = 0; current && depth < 5; depth++) {
    if ('shape' in current) return current as z.ZodObject;
    const def = current.def as { innerType?: z.ZodType; in?: z.ZodType; schema?: z.ZodType };
    current = def.innerType ?? def.in ?? def.schema;
  }
  return undefined;
}

test('docs/configuration.md names every key of the configuration schema', (t) => {
  const keys = Object.entries(configSchema.shape).flatMap(([section, schema]) =>
    Object.keys(objectOf(schema)?.shape ?? {}).map((key) => `${section}.${key}`));
  t.true(keys.length > 40, 'the schema was read');
  t.deepEqual(keys.filter((key) => !doc.includes(`\`${key}\``)), [], 'keys without a line in docs/configuration.md');
});
