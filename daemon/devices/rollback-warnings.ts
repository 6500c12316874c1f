import type { EffectiveCatalog, EffectiveModel } from '../catalog/effective-catalog.ts';
import { modelKey } from '../catalog/types.ts';
import { compareSignatureSeq } from '../contract/identifiers.ts';
import type { DeviceRecord } from './device-registry.ts';

/** A model an assignment would offer that devices under it will refuse as a rollback. */
export interface RollbackWarning {
  code: 'rollback_refused';
  /** The model offered, and the sequence its signature covers (null: v1 or unsigned, 0). */
  model: string;
  version: string;
  signatureSeq: string | null;
  /** How many known devices run a model of that name signed with a higher sequence, the highest, and some of them. */
  devices: number;
  runningSeq: string;
  macs: string[];
  message: string;
}

const MACS_SHOWN = 10;

/**
 * Devices keep the highest signature sequence they accepted for a model name and refuse
 * anything below it (docs/security.md "Signature order"): assigning old bytes under their
 * old signature gets them nowhere. Said when the assignment is made, with what to do
 * instead, not discovered as a fleet that stays where it is.
 */
export function rollbackWarnings(
  catalog: EffectiveCatalog,
  devices: Iterable<DeviceRecord>,
  selector: string,
  offered: readonly EffectiveModel[],
): RollbackWarning[] {
  const warnings: RollbackWarning[] = [];
  const deciding = [...devices].filter((device) => catalog.decidesFor(selector, device.mac));
  for (const model of offered) {
    const refusing: Array<{ mac: string; seq: string }> = [];
    for (const device of deciding) {
      const seq = runningSeqOf(catalog, device, model.name);
      if (seq !== undefined && compareSignatureSeq(seq, model.signatureSeq) > 0) refusing.push({ mac: device.mac, seq });
    }
    if (refusing.length === 0) continue;
    const highest = refusing.reduce((a, b) => (compareSignatureSeq(a.seq, b.seq) >= 0 ? a : b)).seq;
    const target = model.signatureSeq ?? '0';
    warnings.push({
      code: 'rollback_refused',
      model: model.name,
      version: model.version,
      signatureSeq: model.signatureSeq ?? null,
      devices: refusing.length,
      runningSeq: highest,
      macs: refusing.slice(0, MACS_SHOWN).map((device) => device.mac),
      message: `${refusing.length} device${refusing.length === 1 ? '' : 's'} under ${selector} run${refusing.length === 1 ? 's' : ''} ${model.name} signed with sequence ${highest} > ${target} `
        + `(${model.name}@${model.version}) and will refuse it as a rollback; publish its bytes again under a higher sequence with `
        + `\`modelferry rollback ${model.name} --to ${model.version} --sign-key KEY\``,
    });
  }
  return warnings;
}

/**
 * The signature sequence of the model named `name` that a device reports running: by the
 * version it reports, else by its bytes when every version of that name with those bytes has
 * the same sequence. undefined when it runs something else, or it cannot be told.
 */
function runningSeqOf(catalog: EffectiveCatalog, device: DeviceRecord, name: string): string | undefined {
  const report = device.report;
  if (!report || (report.model !== undefined && report.model !== name)) return undefined;
  if (report.version !== undefined) {
    const model = catalog.models.get(modelKey(name, report.version));
    if (model) return model.signatureSeq ?? '0';
  }
  if (report.sha256 === undefined) return undefined;
  const seqs = new Set(catalog.modelsWithSha256(report.sha256).filter((m) => m.name === name).map((m) => m.signatureSeq ?? '0'));
  return seqs.size === 1 ? [...seqs][0] : undefined;
}
