// A tiny event emitter that works the same in browsers and Node (EventTarget would
// make every listener unwrap `event.detail`).

export class Emitter {
  #listeners = new Map(); // event name -> Set of functions

  /** Adds a listener; returns a function that removes it. */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  /**
   * Listens for one occurrence. Without `fn`, returns a promise of the event's value,
   * which is handy in tests and in `await client.once('connected')`.
   */
  once(event, fn) {
    if (!fn) return new Promise((resolve) => this.once(event, resolve));
    const wrapper = (value) => {
      this.off(event, wrapper);
      fn(value);
    };
    return this.on(event, wrapper);
  }

  /**
   * Calls every listener of `event` with `value`. A listener that throws must not
   * break the caller (the client's state machine), so its error is reported as an
   * 'error' event instead — or logged, if it was an 'error' listener that threw.
   */
  emit(event, value) {
    const fns = this.#listeners.get(event);
    if (!fns) return false;
    for (const fn of [...fns]) {
      try {
        fn(value);
      } catch (err) {
        if (event === 'error') console.error('error listener threw', err);
        else this.emit('error', err);
      }
    }
    return fns.size > 0;
  }

  listenerCount(event) {
    return this.#listeners.get(event)?.size ?? 0;
  }
}
