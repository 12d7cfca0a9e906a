#!/usr/bin/env node
import process from 'node:process';
import { start } from './start.js';

const { main } = await start(process.argv[2]);
process.exitCode = await main(process.argv.slice(2));
