// InputQueue sends a terminal's input (keys and pastes) through a WebSocket
// in messages of at most `chunk` bytes, and only while the socket holds
// less than `highWater` bytes not yet sent: a paste of megabytes then
// takes no more memory in the browser than it must, meets no message
// limit, and goes as fast as the remote side takes it. The browser has no
// event for a socket's buffer draining, so a full socket is looked at
// again after `retryMs`.

// Sink is the part of a WebSocket the queue uses.
export interface Sink {
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
}

export interface InputQueueOptions {
  chunk: number;
  highWater: number;
  retryMs: number;
  // onProgress is called after each round of sending.
  onProgress?: () => void;
  // setTimer runs fn after ms and returns a function that cancels it;
  // window.setTimeout by default.
  setTimer?: (fn: () => void, ms: number) => () => void;
}

export class InputQueue {
  private readonly parts: Uint8Array[] = [];
  private pendingBytes = 0;
  private totalBytes = 0;
  private cancelTimer: (() => void) | null = null;
  private sink: Sink | null = null;
  private readonly setTimer: (fn: () => void, ms: number) => () => void;

  constructor(private readonly opts: InputQueueOptions) {
    this.setTimer = opts.setTimer ?? ((fn, ms) => {
      const id = window.setTimeout(fn, ms);
      return () => window.clearTimeout(id);
    });
  }

  // pending is how many bytes wait to be sent.
  get pending(): number { return this.pendingBytes; }

  // total is how many bytes were queued since the queue was last empty.
  get total(): number { return this.totalBytes; }

  // attach sends to sink from now on, dropping what was queued for the
  // one before; null stops sending.
  attach(sink: Sink | null): void {
    this.clear();
    this.sink = sink;
  }

  // clear drops everything not yet sent.
  clear(): void {
    this.parts.length = 0;
    this.pendingBytes = 0;
    this.totalBytes = 0;
    this.cancelTimer?.();
    this.cancelTimer = null;
    this.opts.onProgress?.();
  }

  push(bytes: Uint8Array): void {
    if (!this.sink || bytes.length === 0) return;
    this.parts.push(bytes);
    this.pendingBytes += bytes.length;
    this.totalBytes += bytes.length;
    if (!this.cancelTimer) this.pump();
  }

  private pump(): void {
    this.cancelTimer = null;
    const sink = this.sink;
    if (!sink) return;
    const { chunk, highWater } = this.opts;
    while (this.parts.length > 0 && sink.bufferedAmount < highWater) {
      const head = this.parts[0];
      const piece = head.length > chunk ? head.subarray(0, chunk) : head;
      sink.send(piece);
      this.pendingBytes -= piece.length;
      if (piece === head) this.parts.shift();
      else this.parts[0] = head.subarray(chunk);
    }
    if (this.parts.length > 0) {
      this.cancelTimer = this.setTimer(() => this.pump(), this.opts.retryMs);
    } else {
      this.totalBytes = 0;
    }
    this.opts.onProgress?.();
  }
}
