// bonjour-service's browser, as a device host runs it: prints one JSON line per event
// ({"event":"up"|"down"|"txt-update"|"srv-update", "service":{...}}) for _modelferry._tcp.
// A line "query" on stdin asks the LAN again (a new PTR query); the browser otherwise only
// listens, so what it reports after its first query came unsolicited.
import { Bonjour } from 'bonjour-service';
import readline from 'node:readline';

const bonjour = new Bonjour();
const print = (event, service) => process.stdout.write(`${JSON.stringify({
  event,
  at: Date.now(),
  service: {
    name: service.name, fqdn: service.fqdn, host: service.host, port: service.port,
    addresses: service.addresses, txt: service.txt,
  },
})}\n`);
const browser = bonjour.find({ type: 'modelferry' });
for (const event of ['up', 'down', 'txt-update', 'srv-update']) browser.on(event, (service) => print(event, service));
process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'query') browser.update();
});
process.on('SIGTERM', () => bonjour.destroy(() => process.exit(0)));
