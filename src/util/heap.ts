/**
 * A binary min-heap kept in a plain array: the timer wheel's bucket numbers and the virtual
 * clock's timers. The smallest element is `heap[0]`.
 *
 * @module
 */

/** Adds `value` to `heap`, ordered by `less`. */
export function heapPush<T>(heap: T[], value: T, less: (a: T, b: T) => boolean): void {
  let i = heap.length;
  heap.push(value);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!less(value, heap[parent]!)) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = value;
}

/** Removes the smallest element (`heap[0]`) of `heap`, ordered by `less`. */
export function heapPop<T>(heap: T[], less: (a: T, b: T) => boolean): void {
  const last = heap.pop()!;
  if (heap.length === 0) return;
  let i = 0;
  const n = heap.length;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && less(heap[r]!, heap[l]!) ? r : l;
    if (!less(heap[c]!, last)) break;
    heap[i] = heap[c]!;
    i = c;
  }
  heap[i] = last;
}
