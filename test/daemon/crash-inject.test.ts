import { testNeeding } from '../helpers/requirements.ts';
import { crashInject } from '../scripts/crash-inject.ts';

// The short version of test/scripts/crash-inject.ts: a gateway killed with SIGKILL at random
// moments during pushes, assignments, deletes, upstream syncs and garbage collections,
// restarted and checked each time (every entry has its blob with the right sha256, nothing
// acknowledged lost, no temporary file, device answers before or after). The long run (100
// kills and more) is the script's.

testNeeding('nginx')('three SIGKILLs, one at a random moment, one into a sync, one into a GC, while pushes, assignments and deletes run: nothing acknowledged lost, nothing half-done', async (t) => {
  const counts = await crashInject(t, 3, (line) => t.log(line));
  t.is(counts.kills, 3);
});
