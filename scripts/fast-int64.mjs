// Rewrites ts-proto's generated code so its 64-bit integer fields use node/util/proto-int64.ts
// (fast paths for small values; the wire bytes are unchanged). Run by scripts/gen-proto.sh
// after protoc; idempotent. Usage: node scripts/fast-int64.mjs FILE...
import fs from 'node:fs';
import path from 'node:path';

const HELPERS = ['readInt64', 'readUint64', 'writeInt64', 'writeUint64'];

for (const file of process.argv.slice(2)) {
  let text = fs.readFileSync(file, 'utf8');
  const before = text;
  text = text.replace(/longToNumber\(reader\.uint64\(\)\)/g, 'readUint64(reader)');
  text = text.replace(/longToNumber\(reader\.int64\(\)\)/g, 'readInt64(reader)');
  // `writer.uint32(16).uint64(message.x);` and, in packed loops, `writer.uint64(v);`
  text = text.replace(
    /^(\s*)(writer(?:\.uint32\(\d+\))?)\.(u?)int64\(([^;]*)\);$/gm,
    (_m, indent, target, u, value) => `${indent}write${u ? 'Uint64' : 'Int64'}(${target}, ${value});`,
  );
  if (/\.(u?)int64\(/.test(text.replace(/reader\.(u?)int64\(\)/g, '')))
    throw new Error(`${file}: a 64-bit integer call this script does not know how to rewrite`);
  if (text === before) continue;
  const used = HELPERS.filter((name) => text.includes(`${name}(`));
  if (!text.includes('/util/proto-int64.js')) {
    const helperPath = path
      .relative(path.dirname(file), path.resolve('node/util/proto-int64.js'))
      .replaceAll(path.sep, '/');
    const importLine = `import { ${used.join(', ')} } from "${helperPath.startsWith('.') ? helperPath : `./${helperPath}`}";\n`;
    text = text.replace(
      /(import \{ BinaryReader, BinaryWriter \} from "@bufbuild\/protobuf\/wire";\n)/,
      `$1${importLine}`,
    );
  }
  // ts-proto emits longToNumber only when it uses it; drop it if nothing does any more.
  if (!/longToNumber\(/.test(text.replace(/function longToNumber\(/, ''))) {
    text = text.replace(
      /\nfunction longToNumber\(int64: \{ toString\(\): string \}\): number \{\n[\s\S]*?\n\}\n/,
      '\n',
    );
  }
  fs.writeFileSync(file, text);
  console.log(`fast-int64: rewrote ${file}`);
}
