import { readFile } from 'node:fs/promises';
import { option, positional, required, type Args } from './args.ts';
import { GatewayClient } from './gateway-client.ts';

const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));

export const publishHelp = `modelferry publish STORE_DIR FILE --name NAME --version VERSION [--assign SELECTOR]
                   [--sign-key PRIVATE_KEY_FILE | --signature BASE64 --key-id HEX]
Adds a model to a static store folder: STORE_DIR/artifacts/<sha256> first, then
STORE_DIR/manifest.json, each written atomically, so a reader never sees a manifest naming
a missing artifact. Gateways sync from the folder once it is served (nginx, S3, a CDN):
upload artifacts/ before manifest.json. Same checks as a push: name and version rules,
ExecuTorch format, immutable versions. With --assign, also assigns it to SELECTOR (a MAC,
group:<name> or default) in the store. Prints what it did as JSON.`;

export async function publish(args: Args): Promise<number> {
  const storeDir = positional(args, 0, 'STORE_DIR');
  const file = positional(args, 1, 'FILE');
  // Loaded here so that other commands do not pay for the store code.
  const { publish: publishToStore } = await import('../sync/publish.ts');
  const signKey = option(args, 'sign-key');
  const signature = option(args, 'signature');
  const result = await publishToStore({
    storeDir,
    file,
    name: required(args, 'name'),
    version: required(args, 'version'),
    assign: option(args, 'assign'),
    signKeyPem: signKey === undefined ? undefined : await readFile(signKey, 'utf8'),
    signature: signature === undefined ? undefined : { signature, keyId: required(args, 'key-id') },
  });
  print(result);
  return 0;
}

export const syncHelp = `modelferry sync
Has the gateway sync from its upstream store now (POST /v1/sync, admin scope) and prints
the outcome as JSON; exits 1 when the sync failed (the reason is on stderr).
Client options: --gateway URL (or MODELFERRY_GATEWAY, default http://localhost:8080),
--token TOKEN (or MODELFERRY_TOKEN).`;

export async function sync(args: Args): Promise<number> {
  print((await GatewayClient.fromArgs(args).request('POST', '/v1/sync')).body);
  return 0;
}
