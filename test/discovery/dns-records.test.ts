import test from 'ava';
import { answerQuery, decodeTxt, goodbyesOf, instanceFqdn, recordsOf, SERVICE_TYPE, type Advertisement, type DnsRecord } from '../../daemon/discovery/dns-records.ts';
import { hostAddresses, listeningAddresses, localHostName } from '../../daemon/discovery/host-addresses.ts';

const ad: Advertisement = {
  instance: 'modelferry on pi',
  host: 'pi.local',
  port: 8080,
  txt: { txtvers: '1', api: '/v1', id: '0123456789abcdef', prio: '10', rev: 'aaaabbbbccccdddd', tls: '0' },
  addresses: ['192.168.1.20', 'fe80::1'],
};
const records = recordsOf(ad);
const fqdn = instanceFqdn(ad.instance);
const summary = (list: DnsRecord[]) => list.map((record) => `${record.type} ${record.name}`).sort();

test('a PTR query, as ESP-IDF mdns_query_ptr sends it, gets SRV, TXT and both addresses as additionals', (t) => {
  const { answers, additionals } = answerQuery({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }, records);
  t.deepEqual(summary(answers), [`PTR ${SERVICE_TYPE}`]);
  t.deepEqual(summary(additionals), ['A pi.local', 'AAAA pi.local', `SRV ${fqdn}`, `TXT ${fqdn}`]);
});

test('one query asking PTR, SRV, TXT and A together is answered in one response, nothing twice', (t) => {
  const { answers, additionals } = answerQuery({
    questions: [
      { name: SERVICE_TYPE, type: 'PTR' }, { name: fqdn, type: 'SRV' }, { name: fqdn, type: 'TXT' }, { name: 'pi.local', type: 'A' },
    ],
  }, records);
  t.deepEqual(summary(answers), ['A pi.local', `PTR ${SERVICE_TYPE}`, `SRV ${fqdn}`, `TXT ${fqdn}`]);
  t.deepEqual(summary(additionals), ['AAAA pi.local']);
});

test('an SRV query (mdns_query_srv) brings the addresses of its target; ANY on the instance too', (t) => {
  const srv = answerQuery({ questions: [{ name: fqdn, type: 'SRV' }] }, records);
  t.deepEqual(summary(srv.answers), [`SRV ${fqdn}`]);
  t.deepEqual(summary(srv.additionals), ['A pi.local', 'AAAA pi.local']);
  const any = answerQuery({ questions: [{ name: fqdn.toUpperCase(), type: 'ANY' }] }, records);
  t.deepEqual(summary(any.answers), [`SRV ${fqdn}`, `TXT ${fqdn}`]);
  t.deepEqual(summary(any.additionals), ['A pi.local', 'AAAA pi.local']);
});

test('known answers with at least half their TTL left are not repeated; other names get nothing', (t) => {
  const ptr = records.find((record) => record.type === 'PTR' && record.name === SERVICE_TYPE)!;
  const suppressed = answerQuery({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }], answers: [{ ...ptr, ttl: ptr.ttl }] }, records);
  t.deepEqual(suppressed.answers, []);
  const stale = answerQuery({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }], answers: [{ ...ptr, ttl: 10 }] }, records);
  t.is(stale.answers.length, 1);
  t.deepEqual(answerQuery({ questions: [{ name: '_http._tcp.local', type: 'PTR' }] }, records).answers, []);
  // Whatever a hostile packet holds is skipped, not thrown on.
  t.deepEqual(answerQuery({ questions: [{ name: 7 }, null as never, { name: SERVICE_TYPE }], answers: [null, 'x', { name: 1 }] }, records).answers, []);
});

test('records carry the TXT keys of docs/design.md "LAN discovery", cache-flush on unique records, TTL 0 in goodbyes', (t) => {
  const txt = records.find((record) => record.type === 'TXT')!;
  t.deepEqual(decodeTxt(txt.data), ad.txt);
  t.true(txt.flush);
  t.falsy(records.find((record) => record.type === 'PTR')!.flush);
  t.deepEqual(records.find((record) => record.type === 'SRV')!.data, { port: 8080, target: 'pi.local', priority: 0, weight: 0 });
  t.true(goodbyesOf(records).every((record) => record.ttl === 0 && !record.flush));
});

test('the host name is the first label of the hostname, with what DNS does not allow replaced', (t) => {
  t.is(localHostName('Pi_4.site.lan'), 'Pi-4.local');
});

test('advertised addresses: no loopback, no interface without a hardware address, no zone', (t) => {
  const info = (address: string, family: 'IPv4' | 'IPv6', mac: string, internal = false) => ({
    address, family, mac, internal, netmask: '', cidr: null, scopeid: 0,
  });
  t.deepEqual(hostAddresses({
    lo: [info('127.0.0.1', 'IPv4', '00:00:00:00:00:00', true)],
    eth0: [info('192.168.1.20', 'IPv4', 'aa:bb:cc:dd:ee:ff'), info('fe80::1%eth0', 'IPv6', 'aa:bb:cc:dd:ee:ff')],
    tun0: [info('10.8.0.2', 'IPv4', '00:00:00:00:00:00')],
  } as never), ['192.168.1.20', 'fe80::1']);
});

test('only addresses the API listens on are advertised: IPv4 for 0.0.0.0, all for ::, one for one', (t) => {
  const all = ['192.168.1.20', '192.168.1.21', 'fe80::1'];
  t.deepEqual(listeningAddresses('0.0.0.0', all), ['192.168.1.20', '192.168.1.21']);
  t.deepEqual(listeningAddresses('::', all), all);
  t.deepEqual(listeningAddresses('192.168.1.21', all), ['192.168.1.21']);
  t.deepEqual(listeningAddresses('127.0.0.1', all), []);
  t.deepEqual(listeningAddresses('gw.site.lan', all), all);
});
