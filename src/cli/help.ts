/**
 * Help text: the command list, per-command usage with every option, and the exit codes.
 */
import type { OptionSpec, OptionSpecs } from './args.js';
import type { Command } from './context.js';

const WIDTH = 100;

/** Word-wrap `text` to `width` columns, every line prefixed with `indent`. */
export function wrap(text: string, indent = '', width = WIDTH): string {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      out.push(indent + line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) out.push(indent + line);
  return out.join('\n') + '\n';
}

function optionLabel(name: string, s: OptionSpec): string {
  const flag = `${s.short ? `-${s.short}, ` : '    '}--${name}`;
  return s.type === 'string' ? `${flag} ${s.arg ?? 'VALUE'}` : flag;
}

function optionLines(specs: OptionSpecs): string {
  const entries = Object.entries(specs);
  const labels = entries.map(([n, s]) => optionLabel(n, s));
  const width = Math.min(34, Math.max(...labels.map((l) => l.length)) + 2);
  return entries
    .map(([, s], i) => {
      const label = labels[i]!;
      const help = `${s.help}${s.def !== undefined ? ` (default ${s.def})` : ''}${s.multiple ? ' [repeatable]' : ''}`;
      const pad = label.length + 2 > width ? `\n  ${' '.repeat(width)}` : ' '.repeat(width - label.length);
      return wrap(help, '', WIDTH - width - 2)
        .trimEnd()
        .split('\n')
        .map((l, j) => (j === 0 ? `  ${label}${pad}${l}` : `  ${' '.repeat(width)}${l}`))
        .join('\n');
    })
    .join('\n') + '\n';
}

/** The exit codes, as help and docs describe them. */
export const EXIT_CODES_TEXT = `Exit codes:
  0    success
  1    the controller completed a command with an NVMe status error
  2    bad usage: unknown command or option, missing or invalid value, invalid argument
  3    connection failure: refused, unreachable, authentication failed, closed or timed out while connecting, no usable path
  4    protocol error or any other failure
  130  interrupted (Ctrl-C) before the command finished
`;

/** `nvmeof help <command>`. */
export function commandHelp(cmd: Command): string {
  const formats = cmd.formats ?? ['normal', 'json'];
  const common: OptionSpecs = {
    'output-format': { type: 'string', short: 'o', arg: 'FMT', help: `output format: ${formats.join(', ')}`, def: 'normal' },
    help: { type: 'boolean', short: 'h', help: 'show this help' },
  };
  let s = `Usage: nvmeof ${cmd.usage}\n\n${wrap(cmd.description)}\nOptions:\n${optionLines({ ...cmd.options, ...common })}`;
  if (cmd.connection && Object.keys(cmd.connection).length > 0) s += `\nConnection:\n${optionLines(cmd.connection)}`;
  s += `\nExamples:\n${cmd.examples.map((e) => `  ${e}`).join('\n')}\n`;
  return s;
}

/** `nvmeof help`. */
export function generalHelp(commands: readonly Command[], version: string): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  const list = commands.map((c) => wrap(c.summary, ' '.repeat(width + 2)).replace(/^\s+/, `  ${c.name.padEnd(width)}`)).join('');
  return (
    `nvmeof ${version}: NVMe over Fabrics (TCP) from the command line, with no kernel modules or root.\n\n` +
    `Usage: nvmeof <command> [options]\n       nvmeof help <command>\n       nvmeof --version\n\n` +
    `Commands:\n${list}\n` +
    wrap(
      'Commands that connect take -a/--traddr ADDR, -s/--trsvcid PORT, -n/--nqn NQN, -q/--hostnqn, -I/--hostid, ' +
        '-k/--keep-alive-tmo SEC, -g/--hdr-digest, -G/--data-digest, --nr-io-queues N, -Q/--queue-size N and ' +
        '--timeout MS, as nvme-cli does. Every command takes -o/--output-format normal|json (aligned text, or JSON ' +
        'with 64-bit values as decimal strings).',
    ) +
    `\n${EXIT_CODES_TEXT}\nTry "nvmeof demo" first: it needs nothing but Node.js.\n`
  );
}
