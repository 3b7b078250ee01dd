// "Do this once the current turn of the event loop is over": however many times it is
// requested before then, the work runs once (setImmediate), so everything produced in one
// turn is handled together (one Ready pass, one frame per peer, one BatchTransfer per shard).
export class NextTurn {
  private scheduled = false;

  constructor(private readonly work: () => void) {}

  request(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.work();
    });
  }
}
