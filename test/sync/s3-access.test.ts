import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { NO_S3_SETTINGS, objectUrl, resolveS3Access } from '../../daemon/s3/s3-access.ts';
import { tempDir } from '../helpers/harness.ts';

// Where a gateway's S3 settings come from (docs/configuration.md "upstream"): the config,
// else the standard AWS_* variables; a secret may be a file, or a systemd credential.

test('the config wins; what it leaves out comes from the AWS_* variables; an endpoint of our own is path-style', async (t) => {
  const env = { AWS_ACCESS_KEY_ID: 'AKIAENV', AWS_SECRET_ACCESS_KEY: 'env-secret', AWS_REGION: 'eu-central-1', AWS_ENDPOINT_URL: 'http://minio.lan:9000' };
  const fromEnv = await resolveS3Access(NO_S3_SETTINGS, env);
  t.like(fromEnv, { region: 'eu-central-1', credentials: { accessKeyId: 'AKIAENV', secretAccessKey: 'env-secret' }, pathStyle: true });
  t.is(objectUrl(fromEnv, { bucket: 'models', key: 'site a/manifest.json' }).href, 'http://minio.lan:9000/models/site%20a/manifest.json');
  const fromConfig = await resolveS3Access({ ...NO_S3_SETTINGS, accessKeyId: 'AKIACONF', secretAccessKey: 'conf-secret' }, env);
  t.like(fromConfig, { credentials: { accessKeyId: 'AKIACONF', secretAccessKey: 'conf-secret' } });
  const aws = await resolveS3Access(NO_S3_SETTINGS, { AWS_REGION: 'eu-west-1' });
  t.like(aws, { endpoint: null, credentials: null, pathStyle: false });
  t.is(objectUrl(aws, { bucket: 'models', key: 'site-a/manifest.json' }).href, 'https://models.s3.eu-west-1.amazonaws.com/site-a/manifest.json');
  t.is(objectUrl(aws, { bucket: 'models.example', key: 'm.json' }).href, 'https://s3.eu-west-1.amazonaws.com/models.example/m.json', 'a dotted bucket does not fit the TLS name: path-style');
});

test('secretAccessKeyFile: an absolute path, or a relative name in $CREDENTIALS_DIRECTORY (systemd LoadCredential=)', async (t) => {
  const dir = await tempDir(t);
  await mkdir(path.join(dir, 'creds'));
  await writeFile(path.join(dir, 'creds', 's3-secret'), 'from-a-credential\n');
  const settings = { ...NO_S3_SETTINGS, accessKeyId: 'AKIAFILE', secretAccessKeyFile: 's3-secret' };
  t.like(await resolveS3Access(settings, { CREDENTIALS_DIRECTORY: path.join(dir, 'creds') }), { credentials: { secretAccessKey: 'from-a-credential' } });
  t.like(await resolveS3Access({ ...settings, secretAccessKeyFile: path.join(dir, 'creds', 's3-secret') }, {}), { credentials: { secretAccessKey: 'from-a-credential' } });
  const outside = await t.throwsAsync(resolveS3Access(settings, {}));
  t.regex(outside!.message, /relative name, which means a systemd credential, but \$CREDENTIALS_DIRECTORY is not set/);
  const missing = await t.throwsAsync(resolveS3Access({ ...settings, secretAccessKeyFile: path.join(dir, 'nope') }, {}));
  t.regex(missing!.message, /cannot read the S3 secret from upstream\.s3\.secretAccessKeyFile .*ENOENT/);
  const half = await t.throwsAsync(resolveS3Access({ ...NO_S3_SETTINGS, accessKeyId: 'AKIAHALF' }, {}));
  t.regex(half!.message, /access key id AKIAHALF has no secret/);
});
