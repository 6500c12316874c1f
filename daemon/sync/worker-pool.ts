/**
 * Works through `items` with at most `concurrency` at once. After the first failure no new
 * item is started; the ones under way finish, and then the failure is thrown. Returns how
 * many items were done.
 */
export async function inPool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<number> {
  const queue = [...items];
  let done = 0;
  let failed: { error: unknown } | undefined;
  const worker = async () => {
    while (queue.length > 0 && failed === undefined) {
      const item = queue.shift()!;
      try {
        await work(item);
        done++;
      } catch (error) {
        failed ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
  if (failed !== undefined) throw failed.error;
  return done;
}
