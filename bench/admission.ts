import type { ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { deviceKey, provenToken } from '../test/helpers/device-keys.ts';
import { makeProgram } from '../test/helpers/programs.ts';
import type { Measured } from './dependent-rows.ts';
import { TOKEN, expectOk, startGateway, stopChild } from './servers.ts';
import { configFor } from './startup.ts';
import { wrk, type WrkResult } from './wrk.ts';

// The price of device identity on the poll path: the same poll to a gateway under
// devices.admission pinned (a device token checked per request) and to one under open,
// in interleaved rounds, as a ratio of medians. Target: at least 0.8x.

const MAC = 'aa:bb:cc:dd:ee:01';
const auth = { Authorization: `Bearer ${TOKEN}` };

async function servingGateway(entry: string[], dir: string, port: number, policy: string, children: ChildProcess[]): Promise<ChildProcess> {
  await mkdir(dir, { recursive: true });
  const gateway = await startGateway(entry, await configFor(dir, port, { devices: { admission: policy } }), port, children);
  const base = `http://127.0.0.1:${port}`;
  await expectOk(fetch(`${base}/v1/models/bench/1`, { method: 'PUT', body: makeProgram(64 * 1024), headers: auth }));
  await expectOk(fetch(`${base}/v1/assignments/default`, {
    method: 'PUT', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'bench', version: '1' }),
  }));
  return gateway;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

export async function pinnedPollThroughput(entry: string[], dir: string, children: ChildProcess[], rounds: number, seconds: number): Promise<Measured> {
  const open = await servingGateway(entry, path.join(dir, 'admission-open'), 18110, 'open', children);
  const pinned = await servingGateway(entry, path.join(dir, 'admission-pinned'), 18111, 'pinned', children);
  try {
    const token = await provenToken('http://127.0.0.1:18111', deviceKey(MAC));
    const results: Array<{ open: WrkResult; pinned: WrkResult }> = [];
    for (let round = 0; round < rounds; round++) {
      const runOpen = () => wrk({ url: `http://127.0.0.1:18110/v1/devices/${MAC}/model`, connections: 256, seconds });
      const runPinned = () => wrk({ url: `http://127.0.0.1:18111/v1/devices/${MAC}/model`, connections: 256, seconds, headers: { Authorization: `Bearer ${token}` } });
      // Alternate who goes first, so drift in machine load favours neither.
      if (round % 2 === 0) results.push({ open: await runOpen(), pinned: await runPinned() });
      else {
        const p = await runPinned();
        results.push({ open: await runOpen(), pinned: p });
      }
    }
    const openMedian = median(results.map((r) => r.open.requestsPerSecond));
    const pinnedMedian = median(results.map((r) => r.pinned.requestsPerSecond));
    const ratio = pinnedMedian / openMedian;
    return {
      name: 'poll 200 under devices.admission pinned (a device token per request) against open, 256 connections',
      target: '>= 0.8x',
      value: `${ratio.toFixed(2)}x (${Math.round(pinnedMedian)} vs ${Math.round(openMedian)} req/s, medians of ${rounds})`,
      met: ratio >= 0.8,
      raw: { rounds: results, openMedian, pinnedMedian, ratio },
    };
  } finally {
    await stopChild(open);
    await stopChild(pinned);
  }
}
