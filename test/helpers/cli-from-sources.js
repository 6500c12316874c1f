// The CLI from its TypeScript sources, for process-level tests: `node cli-from-sources.js
// <command>`. What ships is compiled (dist/cli/main.js); test/build checks that.
import { register } from 'tsx/esm/api';

register();
await import('../../daemon/cli/main.ts');
