import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';

// The parts of daemon/ and the imports between them. A part is the first folder under
// daemon/; a file at daemon/ top level is the composition root (it wires the parts) or a
// shared leaf (imported by any part, importing no part). Every import counts: value, type
// only, re-export, dynamic import() and import() in a type.

/** Wires every part; imports any part, and no part but the command line imports it. */
export const COMPOSITION_ROOT = new Set(['gateway.ts']);

/** Small modules every part may use; each imports only node, packages and other leaves. */
export const SHARED_LEAVES = new Set(['clock.ts', 'errors.ts', 'fs-errors.ts', 'log.ts', 'make-directory.ts', 'metrics.ts', 'version.ts']);

/** One import: `file` (relative to daemon/) imports `target` (relative to daemon/). */
export interface Import {
  file: string;
  target: string;
}

/** The part a file belongs to: its first folder, or the file itself at the top level. */
export function partOf(file: string): string {
  return file.split('/')[0]!;
}

/** The .ts files under `dir`, relative to it, with their text. */
export async function sourcesUnder(dir: string): Promise<Map<string, string>> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  const sources = new Map<string, string>();
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = path.join(entry.parentPath, entry.name);
    sources.set(path.relative(dir, file).split(path.sep).join('/'), await readFile(file, 'utf8'));
  }
  return sources;
}

/** Every relative import of every file, resolved against the file's folder. */
export function importsOf(sources: ReadonlyMap<string, string>): Import[] {
  const imports: Import[] = [];
  for (const [file, text] of sources) {
    for (const { fileName } of ts.preProcessFile(text, true, true).importedFiles) {
      if (!fileName.startsWith('.')) continue;
      imports.push({ file, target: path.posix.normalize(path.posix.join(path.posix.dirname(file), fileName)) });
    }
  }
  return imports;
}

/** Parts that reach each other through imports, and one shortest cycle among them. */
export interface PartCycle {
  /** Every part of the group, sorted. */
  group: string[];
  /** The parts of the cycle in order, the first repeated at the end. */
  parts: string[];
  /** The import behind each step of `parts`. */
  steps: Import[];
}

/** The cycles between parts: one per group of parts that reach each other. */
export function partCycles(imports: readonly Import[]): PartCycle[] {
  const edges = new Map<string, Map<string, Import>>();
  for (const entry of imports) {
    const from = partOf(entry.file);
    const to = partOf(entry.target);
    if (from === to) continue;
    const out = edges.get(from) ?? new Map<string, Import>();
    if (!out.has(to)) out.set(to, entry);
    edges.set(from, out);
  }
  const cycles: PartCycle[] = [];
  for (const group of stronglyConnected(edges)) {
    if (group.length < 2) continue;
    const members = new Set(group);
    const sorted = [...group].sort();
    const trail = pathBack(edges, members, sorted[0]!);
    cycles.push({ group: sorted, parts: trail, steps: trail.slice(1).map((to, index) => edges.get(trail[index]!)!.get(to)!) });
  }
  return cycles;
}

/** Tarjan's algorithm: the groups of parts that reach each other. */
function stronglyConnected(edges: ReadonlyMap<string, ReadonlyMap<string, unknown>>): string[][] {
  const nodes = new Set([...edges.keys(), ...[...edges.values()].flatMap((out) => [...out.keys()])]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const visit = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node)?.keys() ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const group: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        group.push(member);
      } while (member !== node);
      groups.push(group);
    }
  };
  for (const node of nodes) if (!index.has(node)) visit(node);
  return groups;
}

/** A shortest way from `start` back to itself within `members` (breadth first). */
function pathBack(edges: ReadonlyMap<string, ReadonlyMap<string, unknown>>, members: ReadonlySet<string>, start: string): string[] {
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const next of edges.get(node)?.keys() ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        const trail = [start];
        for (let at = node; at !== start; at = cameFrom.get(at)!) trail.unshift(at);
        trail.unshift(start);
        return trail;
      }
      if (!cameFrom.has(next)) {
        cameFrom.set(next, node);
        queue.push(next);
      }
    }
  }
  throw new Error(`${start} is in a cycle but no way back was found`);
}

/** A cycle as a person reads it: the group, one cycle in it, and the import behind each step. */
export function describeCycle(cycle: PartCycle): string {
  const group = cycle.group.length > cycle.parts.length - 1 ? ` (one of the cycles among ${cycle.group.join(', ')})` : '';
  return [`${cycle.parts.join(' → ')}${group}`, ...cycle.steps.map((step) => `  daemon/${step.file} imports daemon/${step.target}`)].join('\n');
}
