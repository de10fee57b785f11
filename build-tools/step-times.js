#!/usr/bin/env node
// Passes a projen run's output through and, at its end, prints how long each task step took, so that CI's log shows
// where the time went (the next slow step is then visible without a rerun):
//
//   npx projen build 2>&1 | node build-tools/step-times.js
//
// projen announces every step with a line "👾 <task path> | <command>"; a step lasts until the next announcement
// (or the end). Steps that run in the background (build-tools/background.sh) report their own time when waited for.
const readline = require('readline');

const STEP = /^👾 (.+?)(?: \| (.*))?$/;
const started = Date.now();
const steps = [];
let current;

function close(at) {
  if (current) current.seconds = (at - current.at) / 1000;
  current = undefined;
}

readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  .on('line', line => {
    process.stdout.write(line + '\n');
    const match = STEP.exec(line);
    if (!match) return;
    const now = Date.now();
    close(now);
    current = { task: match[1], command: match[2] ?? '', at: now };
    steps.push(current);
  })
  .on('close', () => {
    close(Date.now());
    const width = Math.max(...steps.map(s => s.task.length), 4);
    const lines = steps
      .filter(s => s.seconds >= 1)
      .map(s => `${s.seconds.toFixed(0).padStart(5)} s  ${s.task.padEnd(width)}  ${s.command.slice(0, 80)}`);
    process.stdout.write(`\nstep times (steps of 1 s or more; ${((Date.now() - started) / 1000).toFixed(0)} s in all):\n${lines.join('\n')}\n`);
  });
