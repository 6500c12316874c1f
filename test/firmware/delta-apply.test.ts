import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeDelta } from '../../daemon/deltas/make-delta.ts';
import { tempDir } from '../helpers/harness.ts';
import { MODEL_CHANGES, modelVersions, seededBytes } from '../helpers/model-versions.ts';
import { testNeeding } from '../helpers/requirements.ts';
import { BUILD, buildFirmware } from './firmware.ts';

// The deltas the gateway makes (daemon/deltas/make-delta.ts, the npm package fossil-delta)
// applied by the firmware's applier (core/mf_delta.c, through host/tools/mf-delta-apply):
// every kind of model change, fed in TCP-sized pieces and byte by byte, makes the new
// model's bytes exactly; a delta cut short or altered is refused.

const run = promisify(execFile);
const test = testNeeding('firmware-host');
const APPLY = path.join(BUILD, 'mf-delta-apply');

async function apply(dir: string, from: Buffer, delta: Buffer, size: number, piece: number): Promise<{ ok: true; bytes: Buffer } | { ok: false; why: string }> {
  const [source, patch, out] = ['from', 'delta', 'out'].map((name) => path.join(dir, name)) as [string, string, string];
  await writeFile(source, from);
  await writeFile(patch, delta);
  try {
    await run(APPLY, [source, patch, out, String(size), String(piece)]);
    return { ok: true, bytes: await readFile(out) };
  } catch (error) {
    return { ok: false, why: (error as { stderr?: string }).stderr ?? String(error) };
  }
}

test('the firmware makes the new model from every kind of delta the gateway makes, whatever the pieces', async (t) => {
  t.timeout(300_000);
  await buildFirmware();
  const dir = await tempDir(t);
  const pairs: Array<[string, Buffer, Buffer]> = MODEL_CHANGES.map((change) => {
    const { before, after } = modelVersions(256 * 1024, change, 'interop');
    return [change, before, after];
  });
  pairs.push(['unrelated bytes of other sizes', seededBytes(70_001, 'a'), seededBytes(123_457, 'b')]);
  pairs.push(['a source under 16 bytes (one insert)', seededBytes(9, 'c'), seededBytes(5000, 'd')]);
  for (const [what, from, to] of pairs) {
    const delta = makeDelta(from, to);
    for (const piece of [1460, 1]) {
      const result = await apply(dir, from, delta, to.length, piece);
      t.true(result.ok && result.bytes.equals(to), `${what}, ${piece}-byte pieces: ${result.ok ? 'other bytes' : result.why}`);
    }
  }
});

test('a delta cut short, with a byte altered, or for another size is refused', async (t) => {
  t.timeout(300_000);
  await buildFirmware();
  const dir = await tempDir(t);
  const { before, after } = modelVersions(64 * 1024, 'two regions', 'hostile');
  const delta = makeDelta(before, after);
  const refused = async (bytes: Buffer, size: number, why: RegExp) => {
    const result = await apply(dir, before, bytes, size, 1460);
    t.false(result.ok);
    if (!result.ok) t.regex(result.why, why);
  };
  await refused(delta.subarray(0, delta.length - 1), after.length, /bad_delta: truncated/);
  await refused(delta.subarray(0, delta.length >> 1), after.length, /bad_delta/);
  // The last inserted byte changed: only the checksum tells.
  const altered = Buffer.from(delta);
  const end = altered.lastIndexOf(':'.charCodeAt(0), altered.length - 10);
  altered[end + 1]! ^= 0x01;
  await refused(altered, after.length, /bad_delta: bad checksum/);
  await refused(delta, after.length + 1, /bad_delta: the target size is not the model's size/);
});
