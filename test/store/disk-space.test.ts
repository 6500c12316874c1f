import test from 'ava';
import { isModelferryError } from '../../daemon/errors.ts';
import { DiskSpace } from '../../daemon/store/disk-space.ts';
import { tempDir } from '../helpers/harness.ts';

// Claims on free space (docs/limits.md, artifacts.diskReserveBytes), against
// the real free space of the test's own disk: the reserve is set so that about 1.5 MiB is
// left to claim.

const MiB = 1 << 20;

async function spaceWithRoom(dir: string, room: number): Promise<DiskSpace> {
  const reserve = (await DiskSpace.free(dir)) - room;
  return new DiskSpace({ reserveBytes: () => reserve });
}

test('two claims made at once that fit alone but not together: one is refused with insufficient_storage', async (t) => {
  const dir = await tempDir(t);
  const space = await spaceWithRoom(dir, 1.5 * MiB);
  const results = await Promise.allSettled([space.claim(dir, MiB, 'a push'), space.claim(dir, MiB, 'another push')]);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  t.true(isModelferryError(refused.reason) && refused.reason.code === 'insufficient_storage');
  t.regex((refused.reason as Error).message, /promised to transfers under way/);
});

test('a released claim, or one whose bytes were written, no longer holds room', async (t) => {
  const dir = await tempDir(t);
  const space = await spaceWithRoom(dir, 1.5 * MiB);
  const first = await space.claim(dir, MiB, 'a push');
  await t.throwsAsync(space.claim(dir, MiB, 'another push'), { message: /insufficient|needs/ });
  first.release();
  const second = await space.claim(dir, MiB, 'another push');
  // Written bytes show in statfs, not in the claim (here they were never written, so the
  // room they take is counted once, by the claim, until it says they were).
  second.wrote(MiB);
  const third = await space.claim(dir, MiB, 'a third push');
  t.is(third.limit, MiB);
});
