import ts from 'typescript';
import fs from 'node:fs';
import path from 'node:path';
const files = [];
(function walk(d){ for (const e of fs.readdirSync(d,{withFileTypes:true})) { const p=path.join(d,e.name); if(e.isDirectory()) walk(p); else if(p.endsWith('.ts')) files.push(p);} })(process.argv[2]||'plugin');
for (const f of files) {
  const src = ts.createSourceFile(f, fs.readFileSync(f,'utf8'), ts.ScriptTarget.Latest, true);
  const visit = (n) => {
    const lines = () => src.getLineAndCharacterOfPosition(n.getEnd()).line - src.getLineAndCharacterOfPosition(n.getStart()).line + 1;
    if (ts.isClassLike(n)) { const l=lines(); if (l>300) console.log(`class ${l} ${f} ${n.name?.text}`); }
    if (ts.isFunctionLike(n) && n.body) { const l=lines(); if (l>80) console.log(`fn ${l} ${f}:${src.getLineAndCharacterOfPosition(n.getStart()).line+1} ${n.name?.getText?.() ?? '(anon)'}`); }
    ts.forEachChild(n, visit);
  };
  visit(src);
}
