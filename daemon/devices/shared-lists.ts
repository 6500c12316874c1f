/**
 * One copy of each distinct list of names. Devices of one firmware report the same
 * operator list (up to 2,048 names); kept per device, 10,000 of them would hold 10,000
 * copies (170 MiB for 300 operators each). A list is dropped from here once no record
 * holds it any more, so a device sending a new random list on every report cannot grow it.
 */
export class SharedLists {
  readonly #byContent = new Map<string, WeakRef<string[]>>();
  readonly #forget = new FinalizationRegistry<string>((key) => {
    if (this.#byContent.get(key)?.deref() === undefined) this.#byContent.delete(key);
  });

  /** The shared list with the same names in the same order as `list` (`list` itself when new). */
  share(list: string[]): string[] {
    // Names are printable ASCII without spaces (contract/device-report.ts), so a space joins them unambiguously.
    const key = list.join(' ');
    const shared = this.#byContent.get(key)?.deref();
    if (shared) return shared;
    this.#byContent.set(key, new WeakRef(list));
    this.#forget.register(list, key);
    return list;
  }

  /** Distinct lists held (for tests). */
  get size(): number {
    return this.#byContent.size;
  }
}
