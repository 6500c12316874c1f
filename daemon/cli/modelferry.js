#!/usr/bin/env node
// The `modelferry` command. The daemon is TypeScript run through tsx, so `npm install`
// is the whole installation: no build step between a checkout and a running gateway.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
