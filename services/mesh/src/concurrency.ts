/** Runs `fn` over `items`, at most `limit` at a time; results in the order of `items`. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

/**
 * The items of `source` with the next one already asked for while the caller works on the
 * current one: a producer that waits on I/O (a database read) overlaps the consumer's work
 * instead of alternating with it. At most one item is read ahead, so backpressure still holds:
 * a caller that stops asking stops the source one item later. Ending early (`return()`, a
 * `break`, an error) returns the source once the read in flight has settled; that read's item
 * or error is dropped.
 */
export async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  const it = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined = it.next();
  try {
    for (;;) {
      const r: IteratorResult<T> = await pending;
      pending = undefined;
      if (r.done === true) return;
      pending = it.next();
      // A read ahead that fails while the caller still holds this item is reported at the next step.
      pending.catch(() => undefined);
      yield r.value;
    }
  } finally {
    if (pending !== undefined) {
      await pending.catch(() => undefined);
      await it.return?.();
    }
  }
}
