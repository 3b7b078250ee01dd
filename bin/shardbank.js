#!/usr/bin/env node
// The `shardbank` command: a shim over the compiled CLI (npm ci runs `prepare`, which builds dist/).
const { mainOrExit } = await import('../dist/node/cli/main.js');
mainOrExit();
