import { testNeeding } from '../helpers/requirements.ts';
import { Teardowns } from '../helpers/harness.ts';
import { curlPin } from '../tls/tls-helpers.ts';
import { GATEWAY_PORT, startLanGateway } from './gateway.ts';
import { createLan } from './lan.ts';
import { bonjourBrowser, serviceOf, zeroconf, type Json } from './mdns-peers.ts';

// A gateway with tls.enabled on a LAN: its advertisement says tls=1 and the HTTPS port, and
// a device host reaches HTTPS at the advertised address with nothing but the pin it was
// given, the certificate naming the gateway's mDNS host.

const test = testNeeding('netns', 'python3-zeroconf', 'curl', 'openssl');

const TLS_PORT = 8443;
const shared = new Teardowns();
test.after.always(() => shared.run());

test.serial('the advertisement says tls=1 and tlsport; a device host reaches HTTPS there by the pin /healthz gives', async (t) => {
  t.timeout(120_000);
  const lan = await createLan(shared, ['gw', 'dev']);
  const gw = lan.host('gw');
  const dev = lan.host('dev');
  const browser = await bonjourBrowser(dev);
  const gateway = await startLanGateway(shared, gw, { config: { tls: { enabled: true, port: TLS_PORT } } });

  const up = serviceOf(await browser.waitFor((event) => event.event === 'up'));
  t.is(up.port, GATEWAY_PORT);
  t.like(up.txt, { tls: '1', tlsport: String(TLS_PORT) });
  const resolver = await zeroconf(dev, 'browse');
  const found = await resolver.waitFor((event) => event.event === 'added');
  t.like(found.txt as Json, { tls: '1', tlsport: String(TLS_PORT) });
  await resolver.process.stop();

  const health = JSON.parse((await dev.http(`${gateway.url}/healthz`)).body) as { tls: { port: number; fingerprint: string } };
  t.is(health.tls.port, TLS_PORT);
  const url = `https://${gw.address}:${TLS_PORT}/healthz`;
  const pinned = await dev.run('curl', ['-sS', '-k', '--pinnedpubkey', curlPin(health.tls.fingerprint), url]);
  t.is(pinned.code, 0, pinned.stderr);
  t.like(JSON.parse(pinned.stdout), { status: 'ok', tls: health.tls });
  const subject = await dev.run('sh', ['-c', `openssl s_client -connect ${gw.address}:${TLS_PORT} </dev/null 2>/dev/null | openssl x509 -noout -subject`]);
  t.is(subject.stdout.trim(), `subject=CN = ${gw.hostname}.local`);
});
