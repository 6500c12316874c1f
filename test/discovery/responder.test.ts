import { createRequire } from 'node:module';
import test from 'ava';
import { decodeTxt, instanceFqdn, SERVICE_TYPE, type DnsPacket, type DnsRecord } from '../../daemon/discovery/dns-records.ts';
import { instanceName, MDNS_PORT, numberedName, Responder, type Action, type OutgoingPacket, type Peer, type ResponderSettings } from '../../daemon/discovery/responder.ts';

// The mDNS rules of the gateway's advertisement, without a socket or a timer: every input
// goes in with its time, every packet the responder sends goes through dns-packet (the
// encoder and decoder under bonjour-service's multicast-dns) as it would on the wire.

const dnsPacket = createRequire(import.meta.url)('dns-packet') as {
  encode(packet: object): Buffer;
  decode(bytes: Buffer): DnsPacket;
};
/** `packet` as the receiving side decodes it. */
const wire = (packet: object): DnsPacket => dnsPacket.decode(dnsPacket.encode(packet));

const HOST = 'pi.local';
const NAME = 'modelferry on pi';
const FQDN = instanceFqdn(NAME);
const DEVICE: Peer = { address: '192.168.1.50', port: MDNS_PORT };
const LEGACY: Peer = { address: '192.168.1.50', port: 40_000 };
/** With `random` giving 100: probes at 100, 350 and 600 ms, the announcement at 850, its repeat at 1850. */
const PROBES_AT = [100, 350, 600];
const ANNOUNCED_AT = 850;
const REPEATED_AT = 1850;

function settingsOf(over: Partial<ResponderSettings> = {}): ResponderSettings {
  return {
    name: '', hostname: 'pi', host: HOST, port: 8080, tlsPort: null, gatewayId: '0123456789abcdef', priority: 10, revision: 'rev-1',
    addresses: ['192.168.1.20', 'fe80::1'], minAnnounceIntervalMs: 1000, maxResponsesPerSecond: 20, random: () => 100, ...over,
  };
}

type Send = Extract<Action, { kind: 'send' }>;
type Response = Extract<OutgoingPacket, { type: 'response' }>;
type Query = Extract<OutgoingPacket, { type: 'query' }>;

const sends = (actions: Action[]): Send[] => actions.filter((action): action is Send => action.kind === 'send');
const wakeOf = (actions: Action[]) => actions.find((action) => action.kind === 'wake')?.at;
const notes = (actions: Action[]) => actions.filter((action) => action.kind !== 'send' && action.kind !== 'wake');
/** `TYPE name`, sorted; goodbyes (TTL 0) marked. */
const summary = (records: DnsRecord[]) => records.map((record) => `${record.type} ${record.name}${record.ttl === 0 ? ' goodbye' : ''}`).sort();
const dataOf = (records: DnsRecord[], type: string) => records.filter((record) => record.type === type).map((record) => record.data);
const asResponse = (send: Send | undefined): Response => {
  if (send?.packet.type !== 'response') throw new Error(`not a response: ${JSON.stringify(send)}`);
  return send.packet;
};
const asQuery = (send: Send | undefined): Query => {
  if (send?.packet.type !== 'query') throw new Error(`not a query: ${JSON.stringify(send)}`);
  return send.packet;
};

/** Everything a full announcement holds. */
const ALL = [`A ${HOST}`, `AAAA ${HOST}`, `PTR ${SERVICE_TYPE}`, 'PTR _services._dns-sd._udp.local', `SRV ${FQDN}`, `TXT ${FQDN}`].sort();

interface Timed {
  at: number;
  action: Action;
}

/** One responder and the time, driven as advertiser.ts drives it: one wake timer, replaced by every step. */
class Run {
  readonly responder: Responder;
  now = 0;
  wakeAt: number | undefined;

  constructor(over: Partial<ResponderSettings> = {}) {
    this.responder = new Responder(settingsOf(over));
  }

  step(run: (responder: Responder, now: number) => Action[]): Action[] {
    const actions = run(this.responder, this.now);
    for (const send of sends(actions)) dnsPacket.encode(send.packet); // every packet it sends must encode
    this.wakeAt = wakeOf(actions);
    return actions;
  }

  /** Lets time pass to `to`, waking the responder when it asked to be; what it did, and when. */
  until(to: number): Timed[] {
    const done: Timed[] = [];
    for (let steps = 0; this.wakeAt !== undefined && this.wakeAt <= to; steps++) {
      if (steps > 1000) throw new Error('the responder keeps asking to be woken');
      this.now = Math.max(this.now, this.wakeAt);
      for (const action of this.step((responder, now) => responder.wake(now))) done.push({ at: this.now, action });
    }
    this.now = Math.max(this.now, to);
    return done;
  }

  receive(packet: object, from: Peer = DEVICE): Action[] {
    return this.step((responder, now) => responder.receive(wire(packet), from, now));
  }
}

function started(over: Partial<ResponderSettings> = {}): Run {
  const run = new Run(over);
  run.step((responder, now) => responder.start(now));
  return run;
}

/** Announced, its repeat sent, and a second more: every record may be multicast again. */
function settled(over: Partial<ResponderSettings> = {}): Run {
  const run = started(over);
  run.until(REPEATED_AT + 1000);
  return run;
}

/** A response another host sends for `name` (its TXT carries another gateway id); `ttl` 0 for its goodbye. */
function foreignRecords(name: string, id = 'ffffffffffffffff', ttl?: number): DnsRecord[] {
  const fqdn = instanceFqdn(name);
  return [
    { name: fqdn, type: 'SRV', ttl: ttl ?? 120, flush: true, data: { port: 8080, target: 'other.local', priority: 0, weight: 0 } },
    { name: fqdn, type: 'TXT', ttl: ttl ?? 4500, flush: true, data: ['txtvers=1', 'api=/v1', `id=${id}`, 'prio=10', 'rev=x', 'tls=0'] },
  ];
}

// --- probing and naming ---

test('instance names: hostname-based by default, no dots, numbered within 63 bytes on a conflict', (t) => {
  t.is(instanceName('', 'pi.site.lan'), 'modelferry on pi');
  t.is(instanceName('  Lab gw 1.2 ', 'pi'), 'Lab gw 1-2');
  t.is(numberedName('lab', 2), 'lab (2)');
  const long = numberedName('é'.repeat(40), 12);
  t.true(Buffer.byteLength(long) <= 63);
  t.true(long.endsWith(' (12)'));
});

test('start: three probes 250 ms apart after a random delay under 250 ms, then the announcement and its repeat a second later', (t) => {
  const asked: number[] = [];
  const run = new Run({ random: (below) => (asked.push(below), 100) });
  const first = run.step((responder, now) => responder.start(now));
  t.deepEqual(first, [{ kind: 'wake', at: 100 }]);
  t.deepEqual(asked, [250]);
  t.is(run.responder.status().state, 'probing');

  const done = run.until(10_000);
  const sent = done.filter(({ action }) => action.kind === 'send');
  t.deepEqual(sent.map(({ at }) => at), [...PROBES_AT, ANNOUNCED_AT, REPEATED_AT]);
  for (const { action } of sent.slice(0, 3)) {
    const probe = asQuery(action as Send);
    t.is((action as Send).to, 'group');
    // The question is ANY for the name; the proposed records ride in the authority section.
    t.deepEqual(probe.questions, [{ name: FQDN, type: 'ANY' }]);
    t.deepEqual(summary(probe.authorities), [`SRV ${FQDN}`, `TXT ${FQDN}`]);
  }
  const [announcement, repeat] = sent.slice(3).map(({ action }) => asResponse(action as Send));
  t.deepEqual(summary(announcement!.answers), ALL);
  t.is(announcement!.flags, 1 << 10);
  t.deepEqual(repeat, announcement);
  t.deepEqual(notes(done.map(({ action }) => action)), [{ kind: 'announced', reason: 'start', cause: undefined, withoutAddress: false }]);
  t.like(run.responder.status(), { state: 'announced', name: NAME, configuredName: NAME, announcements: 1, renames: 0 });
  // Nothing more to do: no wake asked, and waking anyway does nothing.
  t.is(run.wakeAt, undefined);
  t.deepEqual(run.responder.wake(60_000), []);
});

test('the announcement holds SRV, TXT with the keys of docs/design.md "LAN discovery", the addresses, and cache-flush on unique records', (t) => {
  const run = started({ name: 'Lab gw', revision: 'aaaabbbbccccdddd' });
  const announcement = asResponse(sends(run.until(ANNOUNCED_AT).map(({ action }) => action)).at(-1));
  const fqdn = instanceFqdn('Lab gw');
  const srv = announcement.answers.find((record) => record.type === 'SRV')!;
  t.deepEqual(srv, { name: fqdn, type: 'SRV', ttl: 120, flush: true, data: { port: 8080, target: HOST, priority: 0, weight: 0 } });
  const txt = announcement.answers.find((record) => record.type === 'TXT')!;
  t.deepEqual(decodeTxt(txt.data), { txtvers: '1', api: '/v1', id: '0123456789abcdef', prio: '10', rev: 'aaaabbbbccccdddd', tls: '0' });
  t.true(txt.flush);
  t.deepEqual(dataOf(announcement.answers, 'A'), ['192.168.1.20']);
  t.deepEqual(dataOf(announcement.answers, 'AAAA'), ['fe80::1']);
  t.false(announcement.answers.filter((record) => record.type === 'PTR').some((record) => record.flush));
  t.deepEqual(run.responder.status().txt, decodeTxt(txt.data));
});

test('with HTTPS on, TXT says tls=1 and gives its port in tlsport', (t) => {
  const run = started({ revision: 'r', tlsPort: 8443 });
  const announcement = asResponse(sends(run.until(ANNOUNCED_AT).map(({ action }) => action)).at(-1));
  const txt = announcement.answers.find((record) => record.type === 'TXT')!;
  t.like(decodeTxt(txt.data), { tls: '1', tlsport: '8443' });
});

test('without an address the service is still announced, and says so', (t) => {
  const run = started({ addresses: [] });
  const done = run.until(ANNOUNCED_AT).map(({ action }) => action);
  t.deepEqual(notes(done), [{ kind: 'announced', reason: 'start', cause: undefined, withoutAddress: true }]);
  t.false(asResponse(sends(done).at(-1)).answers.some((record) => record.type === 'A' || record.type === 'AAAA'));
});

test('while probing: another host answering for the name means renaming to "(2)" and probing again from the start', (t) => {
  const run = started();
  run.until(PROBES_AT[1]!);
  const actions = run.receive({ type: 'response', answers: foreignRecords(NAME) });
  t.deepEqual(notes(actions), [{ kind: 'renamed', from: NAME, to: `${NAME} (2)`, reason: 'another host answered for the name' }]);
  t.is(wakeOf(actions), run.now + 100);
  t.like(run.responder.status(), { state: 'probing', name: `${NAME} (2)`, configuredName: NAME, renames: 1 });
  const done = run.until(run.now + 10_000);
  const sent = done.filter(({ action }) => action.kind === 'send');
  t.is(sent.length, 5, 'three new probes, the announcement, its repeat');
  t.deepEqual(asQuery(sent[0]!.action as Send).questions, [{ name: instanceFqdn(`${NAME} (2)`), type: 'ANY' }]);
  t.true(asResponse(sent[3]!.action as Send).answers.some((record) => record.type === 'SRV' && record.name === instanceFqdn(`${NAME} (2)`)));
  // A second conflict on the new name: "(3)".
  t.deepEqual(notes(run.receive({ type: 'response', answers: foreignRecords(`${NAME} (2)`) })),
    [{ kind: 'renamed', from: `${NAME} (2)`, to: `${NAME} (3)`, reason: 'another host announced the same name' }]);
});

test('not conflicts: our own probes and announcements looped back, goodbyes, records of other names, our old revision', (t) => {
  const run = started();
  const probes = run.until(PROBES_AT[2]!).map(({ action }) => action);
  for (const probe of sends(probes)) t.deepEqual(run.receive(probe.packet), [{ kind: 'wake', at: run.wakeAt! }]);
  t.deepEqual(notes(run.receive({ type: 'response', answers: foreignRecords(NAME, 'ffffffffffffffff', 0) })), [], 'a goodbye claims nothing');
  t.deepEqual(notes(run.receive({ type: 'response', answers: foreignRecords('someone else') })), []);
  const announcement = sends(run.until(ANNOUNCED_AT).map(({ action }) => action));
  t.is(announcement.length, 1);
  // rev-0 sorts before rev-1: were the old TXT another host's, we would give the name up.
  run.step((responder, now) => responder.revisionChanged('rev-0', now));
  run.until(run.now + 5000);
  t.deepEqual(run.receive(announcement[0]!.packet), [], 'our announcement of rev-1 heard after rev-0 carries our id: no rename, no reply');
  t.like(run.responder.status(), { name: NAME, renames: 0, txt: { rev: 'rev-0' } });
});

test('an SRV of another host for our name is a conflict even without a TXT; one like ours is not', (t) => {
  const own = started();
  own.until(PROBES_AT[0]!);
  const ours = foreignRecords(NAME)[0]!;
  t.deepEqual(notes(own.receive({ type: 'response', answers: [{ ...ours, data: { port: 8080, target: HOST, priority: 0, weight: 0 } }] })), []);
  t.deepEqual(notes(own.receive({ type: 'response', additionals: [ours] })).map((note) => note.kind), ['renamed']);
});

test('after 15 conflicts within 10 s the next probe waits 5 s; conflicts older than 10 s do not count', (t) => {
  const run = started();
  for (let i = 1; i <= 15; i++) {
    run.now += 10;
    const actions = run.receive({ type: 'response', answers: foreignRecords(run.responder.status().name) });
    t.is(wakeOf(actions), run.now + (i < 15 ? 100 : 5000 + 100), `conflict ${i}`);
  }
  t.is(run.responder.status().name, `${NAME} (16)`);
  run.now += 10_000;
  t.is(wakeOf(run.receive({ type: 'response', answers: foreignRecords(run.responder.status().name) })), run.now + 100);
});

/** Gateways on one simulated LAN: what one sends to the group, all (itself included) receive 1 ms later. */
function lanOf(members: Array<Partial<ResponderSettings>>) {
  const runs = members.map((over) => new Run(over));
  const addresses = members.map((_, i) => `192.168.1.${10 + i}`);
  const inFlight: Array<{ at: number; to: number; packet: DnsPacket; from: Peer }> = [];
  let connected = true;
  const deliver = (from: number, actions: Action[], at: number) => {
    for (const send of sends(actions)) {
      if (!connected || send.to !== 'group') continue;
      for (const to of runs.keys()) inFlight.push({ at: at + 1, to, packet: wire(send.packet), from: { address: addresses[from]!, port: MDNS_PORT } });
    }
  };
  return {
    runs,
    disconnect: () => { connected = false; },
    connect: () => { connected = true; },
    act(i: number, run: (responder: Responder, now: number) => Action[]) {
      deliver(i, runs[i]!.step(run), runs[i]!.now);
    },
    until(to: number) {
      for (;;) {
        const wakes = runs.map((run, i) => ({ at: run.wakeAt ?? Infinity, i }));
        const nextWake = wakes.reduce((a, b) => (b.at < a.at ? b : a));
        inFlight.sort((a, b) => a.at - b.at);
        const nextPacket = inFlight[0];
        const at = Math.min(nextWake.at, nextPacket?.at ?? Infinity);
        if (at > to) break;
        for (const run of runs) run.now = at;
        if (nextPacket && nextPacket.at === at) {
          inFlight.shift();
          this.act(nextPacket.to, (responder, now) => responder.receive(nextPacket.packet, nextPacket.from, now));
        } else {
          this.act(nextWake.i, (responder, now) => responder.wake(now));
        }
      }
      for (const run of runs) run.now = to;
    },
  };
}

const gateway = (n: 'a' | 'b', id: string, delay: number): Partial<ResponderSettings> => ({
  name: 'lab gateway', hostname: `gw${n}`, host: `gw${n}.local`, gatewayId: id, random: () => delay,
});

test('simultaneous probes for one name: whatever the timing, the gateway whose data sorts first gives way, once', (t) => {
  const delays = [0, 1, 99, 124, 125, 249];
  for (const ids of [['1111111111111111', '2222222222222222'], ['2222222222222222', '1111111111111111']] as const) {
    const loses = ids[0] < ids[1] ? 0 : 1;
    for (const delayA of delays) {
      for (const delayB of delays) {
        const lan = lanOf([gateway('a', ids[0], delayA), gateway('b', ids[1], delayB)]);
        lan.act(0, (responder, now) => responder.start(now));
        lan.act(1, (responder, now) => responder.start(now));
        lan.until(10_000);
        const label = `ids ${ids.join('/')}, delays ${delayA}/${delayB}`;
        t.like(lan.runs[loses]!.responder.status(), { state: 'announced', name: 'lab gateway (2)', renames: 1 }, label);
        t.like(lan.runs[1 - loses]!.responder.status(), { state: 'announced', name: 'lab gateway', renames: 0 }, label);
      }
    }
  }
});

test('a gateway that starts later gives way to one already announced, even when its data sorts last', (t) => {
  const lan = lanOf([gateway('a', '1111111111111111', 0), gateway('b', '9999999999999999', 0)]);
  lan.act(0, (responder, now) => responder.start(now));
  lan.until(5000);
  lan.act(1, (responder, now) => responder.start(now));
  lan.until(10_000);
  t.like(lan.runs[0]!.responder.status(), { name: 'lab gateway', renames: 0 });
  t.like(lan.runs[1]!.responder.status(), { state: 'announced', name: 'lab gateway (2)', renames: 1 });
});

test('two gateways announced under one name (a LAN joined later): the one whose data sorts first renames, the other re-asserts its records', (t) => {
  const lan = lanOf([gateway('a', '1111111111111111', 0), gateway('b', '9999999999999999', 0)]);
  lan.disconnect();
  lan.act(0, (responder, now) => responder.start(now));
  lan.act(1, (responder, now) => responder.start(now));
  lan.until(5000);
  t.deepEqual(lan.runs.map((run) => run.responder.status().name), ['lab gateway', 'lab gateway']);
  lan.connect();
  const [a, b] = lan.runs;
  // b hears a's announcement: b keeps the name and says so (its SRV and TXT, to the group).
  const announcementOfA = { type: 'response', answers: foreignRecords('lab gateway', '1111111111111111') };
  const reassert = b!.receive(announcementOfA, { address: '192.168.1.10', port: MDNS_PORT });
  t.deepEqual(summary(asResponse(sends(reassert)[0]).answers), ['SRV lab gateway._modelferry._tcp.local', 'TXT lab gateway._modelferry._tcp.local']);
  t.is(sends(reassert)[0]!.to, 'group');
  // Within a second it does not repeat itself.
  t.deepEqual(sends(b!.receive(announcementOfA)), []);
  // a hears b's: a gives way.
  const renamed = a!.receive({ type: 'response', answers: foreignRecords('lab gateway', '9999999999999999') });
  t.deepEqual(notes(renamed), [{ kind: 'renamed', from: 'lab gateway', to: 'lab gateway (2)', reason: 'another host announced the same name' }]);
  t.is(a!.responder.status().state, 'probing');
});

// --- answering queries ---

test('while probing, queries are not answered', (t) => {
  const run = started();
  run.until(PROBES_AT[1]!);
  t.deepEqual(sends(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] })), []);
  t.deepEqual(sends(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }, LEGACY)), []);
});

const questionsAndAnswers: Array<{ question: { name: string; type: string }; answers: string[]; additionals: string[] }> = [
  { question: { name: SERVICE_TYPE, type: 'PTR' }, answers: [`PTR ${SERVICE_TYPE}`], additionals: [`A ${HOST}`, `AAAA ${HOST}`, `SRV ${FQDN}`, `TXT ${FQDN}`] },
  { question: { name: '_services._dns-sd._udp.local', type: 'PTR' }, answers: ['PTR _services._dns-sd._udp.local'], additionals: [] },
  { question: { name: FQDN, type: 'SRV' }, answers: [`SRV ${FQDN}`], additionals: [`A ${HOST}`, `AAAA ${HOST}`] },
  { question: { name: FQDN, type: 'TXT' }, answers: [`TXT ${FQDN}`], additionals: [] },
  { question: { name: FQDN.toUpperCase(), type: 'ANY' }, answers: [`SRV ${FQDN}`, `TXT ${FQDN}`], additionals: [`A ${HOST}`, `AAAA ${HOST}`] },
  { question: { name: HOST, type: 'A' }, answers: [`A ${HOST}`], additionals: [] },
  { question: { name: HOST, type: 'AAAA' }, answers: [`AAAA ${HOST}`], additionals: [] },
  { question: { name: HOST, type: 'ANY' }, answers: [`A ${HOST}`, `AAAA ${HOST}`], additionals: [] },
];

for (const { question, answers, additionals } of questionsAndAnswers) {
  test(`a ${question.type} query for ${question.name} is answered to the group with ${answers.join(', ')}`, (t) => {
    const run = settled();
    const sent = sends(run.receive({ type: 'query', questions: [question] }));
    t.is(sent.length, 1);
    t.is(sent[0]!.to, 'group');
    const response = asResponse(sent[0]);
    t.deepEqual(summary(response.answers), answers);
    t.deepEqual(summary(response.additionals), additionals);
    t.is(response.flags, 1 << 10);
  });
}

test('questions the gateway has no records for get nothing: other services, other hosts, a type it does not hold', (t) => {
  const run = settled();
  for (const question of [
    { name: '_http._tcp.local', type: 'PTR' }, { name: 'other.local', type: 'A' }, { name: FQDN, type: 'A' }, { name: HOST, type: 'SRV' },
  ]) {
    t.deepEqual(run.receive({ type: 'query', questions: [question] }), [], JSON.stringify(question));
  }
});

test('one query asking PTR, SRV, TXT and A together gets one response, nothing twice', (t) => {
  const run = settled();
  const sent = sends(run.receive({
    type: 'query', questions: [
      { name: SERVICE_TYPE, type: 'PTR' }, { name: FQDN, type: 'SRV' }, { name: FQDN, type: 'TXT' }, { name: HOST, type: 'A' },
    ],
  }));
  t.is(sent.length, 1);
  t.deepEqual(summary(asResponse(sent[0]).answers), [`A ${HOST}`, `PTR ${SERVICE_TYPE}`, `SRV ${FQDN}`, `TXT ${FQDN}`]);
  t.deepEqual(summary(asResponse(sent[0]).additionals), [`AAAA ${HOST}`]);
});

test('known answers: what the querier holds with at least half its TTL left is not sent again', (t) => {
  const run = settled();
  const ptr = { name: SERVICE_TYPE, type: 'PTR', ttl: 4500, data: FQDN };
  t.deepEqual(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }], answers: [ptr] }), []);
  const stale = sends(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }], answers: [{ ...ptr, ttl: 2249 }] }));
  t.deepEqual(summary(asResponse(stale[0]).answers), [`PTR ${SERVICE_TYPE}`]);
});

test('a record multicast less than a second ago is not multicast again: the querier gets it directly', (t) => {
  const run = started();
  run.until(ANNOUNCED_AT);
  run.now += 10;
  const sent = sends(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }));
  t.is(sent.length, 1);
  t.deepEqual(sent[0]!.to, DEVICE);
  t.deepEqual(summary(asResponse(sent[0]).answers), [`PTR ${SERVICE_TYPE}`]);
  t.deepEqual(summary(asResponse(sent[0]).additionals), [`A ${HOST}`, `AAAA ${HOST}`, `SRV ${FQDN}`, `TXT ${FQDN}`]);
  // A second after the announcement, to the group again.
  run.now = ANNOUNCED_AT + 1000;
  run.until(ANNOUNCED_AT + 1000);
  run.now += 1000;
  t.is(sends(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }))[0]!.to, 'group');
});

test("another host's probe for our name is answered to the group every 250 ms, so it gives way", (t) => {
  const run = settled();
  const probe = { type: 'query', questions: [{ name: FQDN, type: 'ANY' }], authorities: foreignRecords(NAME) };
  const first = sends(run.receive(probe));
  t.is(first[0]!.to, 'group');
  t.deepEqual(summary(asResponse(first[0]).answers), [`SRV ${FQDN}`, `TXT ${FQDN}`]);
  run.now += 100;
  t.deepEqual(sends(run.receive(probe))[0]!.to, DEVICE);
  run.now += 150;
  t.is(sends(run.receive(probe))[0]!.to, 'group');
  t.like(run.responder.status(), { state: 'announced', name: NAME }, 'an announced name is not given up to a prober');
});

test('a legacy unicast query (not from port 5353) is answered directly: its id, the questions answered, TTLs of at most 10 s', (t) => {
  const run = settled();
  const sent = sends(run.receive({
    type: 'query', id: 0x4d46, questions: [{ name: SERVICE_TYPE, type: 'PTR' }, { name: FQDN, type: 'SRV' }, { name: 'other.local', type: 'A' }],
  }, LEGACY));
  t.is(sent.length, 1);
  t.deepEqual(sent[0]!.to, LEGACY);
  const response = asResponse(sent[0]);
  t.is(response.id, 0x4d46);
  t.is(response.flags, 1 << 10);
  t.deepEqual(response.questions, [{ name: SERVICE_TYPE, type: 'PTR', class: 'IN' }, { name: FQDN, type: 'SRV', class: 'IN' }]);
  t.deepEqual(summary(response.answers), [`PTR ${SERVICE_TYPE}`, `SRV ${FQDN}`]);
  t.deepEqual(summary(response.additionals), [`A ${HOST}`, `AAAA ${HOST}`, `TXT ${FQDN}`]);
  t.true([...response.answers, ...response.additionals].every((record) => record.ttl <= 10 && record.flush === false));
  // Legacy answers do not count as multicast: the group still gets the next mDNS query's answer.
  t.is(sends(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }))[0]!.to, 'group');
});

test('at most maxResponsesPerSecond responses a second, whatever arrives; announcements are not held back', (t) => {
  const run = settled({ maxResponsesPerSecond: 3, minAnnounceIntervalMs: 0 });
  const ask = (from: Peer) => sends(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }, from));
  const answered = [ask(DEVICE), ask(DEVICE), ask(LEGACY), ask(DEVICE), ask(LEGACY)];
  t.deepEqual(answered.map((sent) => sent.length), [1, 1, 1, 0, 0]);
  t.deepEqual(answered.slice(0, 3).map((sent) => sent[0]!.to), ['group', DEVICE, LEGACY]);
  // A change is announced even with no response left this second.
  run.step((responder, now) => responder.revisionChanged('rev-2', now));
  t.is(sends(run.until(run.now).map(({ action }) => action)).length, 1);
  // The next second, three more.
  run.now += 1000;
  t.deepEqual([ask(LEGACY), ask(LEGACY), ask(LEGACY), ask(LEGACY)].map((sent) => sent.length), [1, 1, 1, 0]);
});

// --- updates ---

test('a new revision is announced at once when the last announcement is older than the minimum interval', (t) => {
  const run = settled({ minAnnounceIntervalMs: 1000 });
  const at = run.now;
  run.step((responder, now) => responder.revisionChanged('rev-2', now));
  t.is(run.wakeAt, at);
  const done = run.until(at + 5000);
  const sent = done.filter(({ action }) => action.kind === 'send');
  t.deepEqual(sent.map(({ at: when }) => when), [at, at + 1000], 'announced, and repeated a second later');
  const announcement = asResponse(sent[0]!.action as Send);
  t.deepEqual(summary(announcement.answers), ALL, 'no goodbye for the old TXT: cache-flush replaces it');
  t.is(decodeTxt(announcement.answers.find((record) => record.type === 'TXT')!.data as string[]).rev, 'rev-2');
  t.deepEqual(notes(done.map(({ action }) => action)), [{ kind: 'announced', reason: 'update', cause: 'revision', withoutAddress: false }]);
  t.like(run.responder.status(), { announcements: 2, txt: { rev: 'rev-2' } });
});

test('a burst of revisions within the minimum interval is one announcement, carrying the last', (t) => {
  const run = settled({ minAnnounceIntervalMs: 5000 });
  run.until(10_000);
  run.step((responder, now) => responder.revisionChanged('rev-2', now));
  const first = run.now;
  run.until(first);
  for (let i = 3; i <= 100; i++) {
    run.now += 10;
    run.step((responder, now) => responder.revisionChanged(`rev-${i}`, now));
    t.is(run.wakeAt, i === 3 ? first + 1000 : first + 5000);
    if (i === 3) run.until(first + 1000); // the repeat of rev-2's announcement
  }
  t.is(run.responder.status().txt.rev, 'rev-100', 'the status says the revision at once');
  const done = run.until(first + 20_000);
  const announcements = done.filter(({ action }) => action.kind === 'announced');
  t.deepEqual(announcements.map(({ at }) => at), [first + 5000]);
  const sent = sends(done.map(({ action }) => action));
  t.is(decodeTxt(asResponse(sent[0]).answers.find((record) => record.type === 'TXT')!.data as string[]).rev, 'rev-100');
  t.is(run.responder.status().announcements, 3);
});

test('the same revision again announces nothing', (t) => {
  const run = settled();
  run.step((responder, now) => responder.revisionChanged('rev-1', now));
  t.deepEqual(run.until(run.now + 10_000), []);
  t.is(run.responder.status().announcements, 1);
});

test('a revision that changes while probing goes out in the announcement that ends the probe', (t) => {
  const run = started();
  run.until(PROBES_AT[1]!);
  t.deepEqual(run.step((responder, now) => responder.revisionChanged('rev-2', now)), [{ kind: 'wake', at: PROBES_AT[2]! }]);
  const probe = asQuery(sends(run.until(PROBES_AT[2]!).map(({ action }) => action))[0]);
  t.is(decodeTxt(probe.authorities.find((record) => record.type === 'TXT')!.data as string[]).rev, 'rev-2');
  const done = run.until(10_000);
  t.is(done.filter(({ action }) => action.kind === 'announced').length, 1);
  t.is(decodeTxt(asResponse(sends(done.map(({ action }) => action))[0]).answers.find((record) => record.type === 'TXT')!.data as string[]).rev, 'rev-2');
});

test('an address added is announced with the others; one removed is withdrawn (TTL 0) in the same packets, then forgotten', (t) => {
  const run = settled({ addresses: ['192.168.1.20'] });
  const added = run.step((responder, now) => responder.addressesRead(['192.168.1.20', '198.18.0.77'], [], now));
  t.deepEqual(notes(added), [{ kind: 'addresses-changed', from: ['192.168.1.20'], to: ['192.168.1.20', '198.18.0.77'] }]);
  const announcement = asResponse(sends(run.until(run.now).map(({ action }) => action))[0]);
  t.deepEqual(dataOf(announcement.answers, 'A'), ['192.168.1.20', '198.18.0.77']);
  t.true(announcement.answers.some((record) => record.type === 'SRV'));
  run.until(run.now + 5000);

  run.step((responder, now) => responder.addressesRead(['192.168.1.20'], [], now));
  const withdrawal = run.until(run.now + 5000);
  const [update, repeat] = sends(withdrawal.map(({ action }) => action)).map(asResponse);
  for (const packet of [update!, repeat!]) {
    t.deepEqual(packet.answers.filter((record) => record.type === 'A').map((record) => `${record.data} ${record.ttl}`), ['192.168.1.20 120', '198.18.0.77 0']);
  }
  t.deepEqual(notes(withdrawal.map(({ action }) => action)), [{ kind: 'announced', reason: 'update', cause: 'addresses', withoutAddress: false }]);
  // The goodbye went out twice; the next announcement no longer carries it.
  run.step((responder, now) => responder.revisionChanged('rev-2', now));
  const next = asResponse(sends(run.until(run.now).map(({ action }) => action))[0]);
  t.deepEqual(summary(next.answers), [`A ${HOST}`, `PTR ${SERVICE_TYPE}`, 'PTR _services._dns-sd._udp.local', `SRV ${FQDN}`, `TXT ${FQDN}`]);
  t.deepEqual(run.responder.status().addresses, ['192.168.1.20']);
});

test('the same addresses read again: nothing, unless the mDNS group had to be joined again (a reconnected interface)', (t) => {
  const run = settled();
  t.deepEqual(run.step((responder, now) => responder.addressesRead(['192.168.1.20', 'fe80::1'], [], now)), []);
  const rejoined = run.step((responder, now) => responder.addressesRead(['192.168.1.20', 'fe80::1'], ['192.168.1.20'], now));
  t.deepEqual(notes(rejoined), [{ kind: 'reconnected', rejoined: ['192.168.1.20'] }]);
  const done = run.until(run.now + 5000);
  t.deepEqual(summary(asResponse(sends(done.map(({ action }) => action))[0]).answers), ALL, 'the same records, announced again');
  t.is(run.responder.status().announcements, 2);
});

test('changes while an update is pending join it: a reconnect is announced even if a revision change follows', (t) => {
  const run = settled({ minAnnounceIntervalMs: 5000 });
  run.step((responder, now) => responder.addressesRead(['192.168.1.20', 'fe80::1'], ['192.168.1.20'], now));
  t.is(run.wakeAt, ANNOUNCED_AT + 5000);
  run.step((responder, now) => responder.revisionChanged('rev-1', now));
  const done = run.until(run.now + 10_000).map(({ action }) => action);
  t.deepEqual(notes(done), [{ kind: 'announced', reason: 'update', cause: 'reconnected', withoutAddress: false }]);
});

test('renaming forgets pending updates and goodbyes: the announcement under the new name is complete and current', (t) => {
  const run = settled();
  run.step((responder, now) => responder.addressesRead(['192.168.1.20'], [], now));
  t.true(asResponse(sends(run.until(run.now).map(({ action }) => action))[0]).answers.some((record) => record.ttl === 0), 'AAAA withdrawn, to be repeated');
  run.step((responder, now) => responder.revisionChanged('rev-2', now));
  t.is(run.wakeAt, run.now + 1000, 'the repeat and the update pending');
  run.receive({ type: 'response', answers: foreignRecords(NAME, 'ffffffffffffffff') });
  const done = run.until(run.now + 20_000).map(({ action }) => action);
  t.deepEqual(notes(done), [{ kind: 'announced', reason: 'start', cause: undefined, withoutAddress: false }]);
  const [announcement] = sends(done).filter((send) => send.packet.type === 'response').map(asResponse);
  t.false(announcement!.answers.some((record) => record.ttl === 0));
  t.is(decodeTxt(announcement!.answers.find((record) => record.type === 'TXT')!.data as string[]).rev, 'rev-2');
  t.is(announcement!.answers.find((record) => record.type === 'SRV')!.name, instanceFqdn(`${NAME} (2)`));
});

// --- stopping and failing ---

test('stop after announcing: goodbyes (TTL 0) for every record, including one being withdrawn, and nothing after', (t) => {
  const run = settled({ addresses: ['192.168.1.20', '198.18.0.77'] });
  run.step((responder, now) => responder.addressesRead(['192.168.1.20'], [], now));
  run.until(run.now);
  const stopped = run.step((responder) => responder.stop());
  t.deepEqual(stopped.map((action) => action.kind), ['send', 'withdrawn']);
  const goodbye = asResponse(sends(stopped)[0]);
  t.is(sends(stopped)[0]!.to, 'group');
  t.deepEqual(summary(goodbye.answers), [...ALL.filter((entry) => !entry.startsWith('AAAA')), `A ${HOST}`].map((entry) => `${entry} goodbye`).sort());
  t.deepEqual(dataOf(goodbye.answers, 'A').sort(), ['192.168.1.20', '198.18.0.77']);
  t.true(goodbye.answers.every((record) => record.ttl === 0 && !record.flush));
  t.is(run.responder.status().state, 'stopped');
  t.is(run.wakeAt, undefined);
  t.deepEqual(run.receive({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] }), []);
  t.deepEqual(run.step((responder, now) => responder.revisionChanged('rev-2', now)), []);
});

test('stop while probing: nothing was announced, so no goodbye', (t) => {
  const run = started();
  run.until(PROBES_AT[1]!);
  t.deepEqual(run.step((responder) => responder.stop()), []);
  t.deepEqual(run.responder.wake(10_000), []);
});

test('a failed socket: the status says why, and nothing is sent or scheduled after', (t) => {
  const run = started();
  run.until(PROBES_AT[1]!);
  run.responder.failed('bind EADDRINUSE');
  t.like(run.responder.status(), { state: 'failed', error: 'bind EADDRINUSE' });
  t.deepEqual(run.responder.wake(10_000), []);
  t.deepEqual(run.receive({ type: 'response', answers: foreignRecords(NAME) }), []);
  t.deepEqual(run.step((responder, now) => responder.addressesRead(['10.0.0.1'], ['10.0.0.1'], now)).map((action) => action.kind), ['addresses-changed']);
  t.deepEqual(run.step((responder) => responder.stop()), []);
});

// --- hostile packets ---

const hostile: unknown[] = [
  null, 7, 'query', [], {}, { type: 'query' }, { type: 'response' }, { type: 'other', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] },
  { type: 'query', questions: 'PTR' }, { type: 'query', questions: { length: 5 } },
  { type: 'query', questions: [null, 7, 'x', { name: 5, type: 'PTR' }, { name: SERVICE_TYPE }, { name: SERVICE_TYPE, type: 12 }, { name: {}, type: 'ANY' }] },
  { type: 'query', id: 'x', questions: [{ name: SERVICE_TYPE, type: 'PTR' }], answers: 'PTR', authorities: 7 },
  { type: 'query', questions: [{ name: FQDN, type: 'ANY' }], authorities: [null, { name: FQDN }, { name: FQDN, type: 'TXT', ttl: 'x', data: ['id=x'] }] },
  { type: 'query', questions: [{ name: FQDN, type: 'ANY' }], authorities: [{ name: FQDN, type: 'SRV', ttl: 120, data: { port: '1', target: 5 } }] },
  { type: 'query', questions: [{ name: FQDN, type: 'ANY' }], authorities: [{ name: FQDN, type: 'TXT', ttl: 120, data: 42 }] },
  { type: 'response', answers: { 0: foreignRecords(NAME)[1], length: 1 }, additionals: 'x' },
  { type: 'response', answers: [null, [], { name: FQDN, type: 'TXT', ttl: 1, data: null }, { name: FQDN, type: 'SRV', ttl: 1, data: null }] },
  { type: 'query', questions: Array.from({ length: 10_000 }, () => ({ name: SERVICE_TYPE, type: 'PTR' })) },
];

for (const state of ['probing', 'announced'] as const) {
  test(`hostile packets while ${state}: nothing thrown, nothing conflicts, the name kept, every answer encodable`, (t) => {
    const run = state === 'probing' ? started() : settled();
    if (state === 'probing') run.until(PROBES_AT[0]!);
    for (const packet of hostile) {
      for (const from of [DEVICE, LEGACY]) {
        run.now += 1;
        const actions = run.step((responder, now) => responder.receive(packet as DnsPacket, from, now));
        t.deepEqual(notes(actions), [], JSON.stringify(packet)?.slice(0, 200));
        for (const send of sends(actions)) t.notThrows(() => dnsPacket.encode(send.packet));
      }
    }
    t.like(run.responder.status(), { state, name: NAME, renames: 0 });
  });
}

test('random packets (5,000, seeded) neither throw nor make the responder send something unencodable or stop waking', (t) => {
  let seed = 0x2545f491;
  const random = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const names = [SERVICE_TYPE, FQDN, HOST, 'x.local', '', FQDN.toUpperCase()];
  const types = ['PTR', 'SRV', 'TXT', 'A', 'AAAA', 'ANY', 'NSEC', 12, null];
  const value = (depth: number): unknown => {
    const kind = Math.floor(random() * (depth > 2 ? 6 : 9));
    switch (kind) {
      case 0: return null;
      case 1: return Math.floor(random() * 70_000) - 10;
      case 2: return pick(names);
      case 3: return pick(types);
      case 4: return ['id=0123456789abcdef', 'rev=x', Buffer.from([0xff, 0x3d])];
      case 5: return undefined;
      case 6: return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      case 7: return { port: value(depth + 1), target: value(depth + 1) };
      default: return { name: value(depth + 1), type: value(depth + 1), ttl: value(depth + 1), data: value(depth + 1) };
    }
  };
  const record = () => ({ name: pick(names), type: pick(types), ttl: pick([0, 10, 120, 4500, -1, 'x']), data: value(1) });
  const section = () => (random() < 0.2 ? value(0) : Array.from({ length: Math.floor(random() * 4) }, () => (random() < 0.7 ? record() : value(1))));
  for (const run of [started(), settled()]) {
    for (let i = 0; i < 2500; i++) {
      run.now += Math.floor(random() * 50);
      run.until(run.now);
      const packet = {
        type: pick(['query', 'response', 'query', 'x']), id: value(1),
        questions: random() < 0.2 ? value(0) : Array.from({ length: Math.floor(random() * 4) }, () => ({ name: pick(names), type: pick(types) })),
        answers: section(), authorities: section(), additionals: section(),
      };
      const actions = run.step((responder, now) => responder.receive(packet as DnsPacket, pick([DEVICE, LEGACY]), now));
      const wake = wakeOf(actions);
      if (wake !== undefined) t.true(Number.isFinite(wake) && wake >= run.now);
      // Run.step already encoded every packet sent; an unencodable one would have thrown.
    }
    t.true(['probing', 'announced'].includes(run.responder.status().state));
  }
});
