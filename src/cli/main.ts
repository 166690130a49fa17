#!/usr/bin/env node
/**
 * The `nvmeof` executable: runs {@link main} with the process's arguments and streams. The first Ctrl-C interrupts
 * the running command (monitor and perf stop and report; a transfer exits 130), a second one exits at once.
 */
import process from 'node:process';
import { AbortedError } from '../index.js';
import { main } from './cli.js';

const interrupt = new AbortController();
let interrupts = 0;
process.on('SIGINT', () => {
  if (++interrupts > 1) process.exit(130);
  interrupt.abort(new AbortedError('interrupted'));
});
// SIGTERM stops a long-running command (nbd) the way the first Ctrl-C does.
process.on('SIGTERM', () => interrupt.abort(new AbortedError('terminated')));

// `nvmeof read ... | head` closes the pipe early: stop quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

void main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  signal: interrupt.signal,
}).then((code) => {
  process.exitCode = code;
  // Everything the command opened is closed by now; should a handle linger, do not hang on it.
  setTimeout(() => process.exit(code), 2000).unref();
});
