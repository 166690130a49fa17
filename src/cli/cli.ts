/**
 * The nvmeof command line: `main(argv, io)` parses the arguments, runs one command and returns its exit code. It
 * never calls process.exit and writes only through `io`, so it can run in-process (tests, other tools).
 */
import pkg from '../../package.json' with { type: 'json' };
import { COMMON_OPTIONS, UsageError, parseCommandArgs } from './args.js';
import { anaLogCommand, discoverCommand, getFeatureCommand, getLogCommand, idCtrlCommand, idNsCommand, listCommand, listSubsysCommand } from './admin.js';
import { ExitCode, exitCodeOf, makeCtx, type CliIo, type Command, type OutputFormat } from './context.js';
import { demoCommand } from './demo.js';
import { commandHelp, generalHelp } from './help.js';
import { monitorCommand } from './monitor.js';
import { nbdCommand } from './nbd.js';
import { perfCommand } from './perf.js';
import { checkTlsKeyCommand, genDhchapKeyCommand, genTlsKeyCommand } from './keys.js';
import { serveCommand } from './serve.js';
import { resvAcquireCommand, resvRegisterCommand, resvReleaseCommand, resvReportCommand } from './resv.js';
import { readCommand, writeCommand } from './transfer.js';

export type { CliIo, Command, Ctx, OutputFormat } from './context.js';
export { ExitCode } from './context.js';

/** The package version. */
export const VERSION: string = pkg.version;

/** Every command, in the order `nvmeof help` lists them. */
export const COMMANDS: readonly Command[] = [
  discoverCommand,
  listSubsysCommand,
  listCommand,
  idCtrlCommand,
  idNsCommand,
  anaLogCommand,
  getLogCommand,
  getFeatureCommand,
  readCommand,
  writeCommand,
  resvRegisterCommand,
  resvAcquireCommand,
  resvReleaseCommand,
  resvReportCommand,
  monitorCommand,
  nbdCommand,
  perfCommand,
  serveCommand,
  genDhchapKeyCommand,
  genTlsKeyCommand,
  checkTlsKeyCommand,
  demoCommand,
];

const BY_NAME = new Map(COMMANDS.map((c) => [c.name, c]));

/** Closest command name, for "did you mean". */
function suggest(name: string): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of BY_NAME.keys()) {
    const d = editDistance(name, c);
    if (d < bestScore) {
      bestScore = d;
      best = c;
    }
  }
  return bestScore <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/** Print an error as one line on stderr and return its exit code. */
function report(io: CliIo, err: unknown, command: string | undefined): number {
  const where = command ? `nvmeof ${command}` : 'nvmeof';
  if (err instanceof UsageError) {
    const hint = err.command ?? command;
    io.stderr.write(`${where}: ${oneLine(err.message)} (see "nvmeof help${hint ? ` ${hint}` : ''}")\n`);
    return ExitCode.USAGE;
  }
  const e = err as { message?: unknown; code?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? ` [${e.code}]` : '';
  io.stderr.write(`${where}: ${oneLine(message)}${code}\n`);
  return exitCodeOf(err);
}

/**
 * Run the CLI with `argv` (the arguments after the program name). Resolves with the exit code; output goes to
 * `io.stdout` / `io.stderr`, and aborting `io.signal` interrupts the command.
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    const topic = first === 'help' ? rest[0] : undefined;
    if (topic === undefined) {
      io.stdout.write(generalHelp(COMMANDS, VERSION));
      return ExitCode.OK;
    }
    const cmd = BY_NAME.get(topic);
    if (!cmd) return report(io, new UsageError(unknownCommand(topic)), undefined);
    io.stdout.write(commandHelp(cmd));
    return ExitCode.OK;
  }
  if (first === '--version' || first === '-V' || first === 'version') {
    io.stdout.write(`nvmeof ${VERSION}\n`);
    return ExitCode.OK;
  }
  const cmd = BY_NAME.get(first);
  if (!cmd) return report(io, new UsageError(unknownCommand(first)), undefined);
  const signal = io.signal ?? new AbortController().signal;
  try {
    const v = parseCommandArgs(cmd.name, [...rest], { ...cmd.options, ...cmd.connection, ...COMMON_OPTIONS }, cmd.positionals);
    if (v.flag('help')) {
      io.stdout.write(commandHelp(cmd));
      return ExitCode.OK;
    }
    const format = v.choice<OutputFormat>('output-format', cmd.formats ?? ['normal', 'json'], 'normal');
    const code = await cmd.run(makeCtx(io, format, signal), v);
    return code ?? ExitCode.OK;
  } catch (err) {
    const code = report(io, err, cmd.name);
    // Whatever the error, a command that failed because it was interrupted exits 130.
    return signal.aborted && code !== ExitCode.USAGE ? ExitCode.INTERRUPTED : code;
  }
}

function unknownCommand(name: string): string {
  const near = suggest(name);
  return `unknown command "${name}"${near ? `; did you mean "${near}"?` : ''}`;
}
