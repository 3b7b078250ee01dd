// `npm run crd:generate`: writes the rendered CRD into deploy/ and charts/.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRD_FILES, renderCrdYaml } from './render-crd.js';

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || dir.endsWith('dist')) dir = dirname(dir);
  return dir;
}

const root = repoRoot();
for (const file of CRD_FILES) {
  const path = join(root, file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, renderCrdYaml(file));
  console.log(`wrote ${file}`);
}
