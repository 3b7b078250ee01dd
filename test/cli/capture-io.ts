// A CliIo that records what a command printed.
import type { CliIo } from '../../node/cli/cli-io.js';

export interface CapturedIo extends CliIo {
  stdout: string[];
  stderr: string[];
}

export function captureIo(): CapturedIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (text) => stdout.push(text),
    err: (text) => stderr.push(text),
    progress: () => undefined,
    stdoutIsTTY: false,
    stderrIsTTY: false,
  };
}
