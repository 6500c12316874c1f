import test from 'ava';
import { crashInject } from '../scripts/crash-inject.ts';

// The short version of test/scripts/crash-inject.ts: a gateway killed with SIGKILL at random
// moments during pushes, assignments and deletes, restarted and checked each time (every
// entry has its blob with the right sha256, nothing acknowledged lost, no temporary file,
// device answers before or after). The long run (100 kills and more) is the script's.

test('three SIGKILLs at random moments during pushes, assignments and deletes lose nothing acknowledged and leave nothing half-done', async (t) => {
  const kills = await crashInject(t, 3, (line) => t.log(line));
  t.is(kills, 3);
});
