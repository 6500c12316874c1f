import { isModelferryError } from '../errors.ts';

/**
 * Why a drop was refused, for the person who made it: often a technician with a USB stick,
 * not the pipeline's author. The gateway's own message follows for the details.
 */
export function refusalText(error: unknown, maxBytes: number): string {
  if (!isModelferryError(error)) return `The gateway could not take this file: ${(error as Error).message}`;
  const detail = error.message;
  switch (error.code) {
    case 'version_conflict':
      return `This version is already on the gateway with different content, and versions never change. Give this build a new version (for example kws@2026.11.24-4.pte) and copy it again. (${detail})`;
    case 'unsupported_format':
      return `This file is not a complete ExecuTorch program (.pte). Copy the .pte file the model export wrote, and make sure the copy finished. (${detail})`;
    case 'body_too_large':
      return `This file is too big: the gateway takes models up to ${maxBytes} bytes (artifacts.maxBytes). (${detail})`;
    case 'insufficient_storage':
      return `The gateway's disk is too full to take this file. Free space on the gateway (delete models no longer used, then POST /v1/cache/gc), then copy the file into the inbox again. (${detail})`;
    case 'digest_mismatch':
      return `The file is not what its sidecar says (sha256 differs): the copy is incomplete or damaged. Copy it again. (${detail})`;
    case 'invalid_name':
    case 'invalid_version':
      return `The model name or version is not valid. Name files name@version.pte, for example kws@2026.11.24-3.pte (lower-case name; version of letters, digits and . _ + -). (${detail})`;
    case 'invalid_selector':
      return `The "assign" in the sidecar is not a device, group or default. Use a MAC address such as aa:bb:cc:dd:ee:ff, group:<name> or default. (${detail})`;
    case 'invalid_signature':
    case 'unknown_key':
    case 'signature_required':
      return `The signature is missing or does not check out. Sign the model with the site's signing key (modelferry sign) and put "signature" and "keyId" in the sidecar. (${detail})`;
    default:
      return `The gateway refused this file (${error.code}): ${detail}`;
  }
}
