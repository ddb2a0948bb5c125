// Validates ServiceMonitor objects against the prometheus-operator API schema that the
// npm package @kubernetes-models/prometheus-operator ships (generated from the
// operator's Go types, the source of its CRD). Called by xtask/deploy_check.py:
//
//   node deploy-check-servicemonitor.mjs NODE_MODULES_DIR < objects.json
//
// Reads a JSON array of objects on stdin; prints one line per problem and exits 1 if
// there is any.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const root = process.argv[2];
const module = `${root}/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js`;
const { ServiceMonitor } = await import(pathToFileURL(module).href);

const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const object of objects) {
  const name = object?.metadata?.name ?? "(no name)";
  try {
    new ServiceMonitor(object).validate();
    console.log(`servicemonitor/${name}: valid against monitoring.coreos.com/v1`);
  } catch (error) {
    failed += 1;
    console.log(`servicemonitor/${name}: ${error.message}`);
  }
}
process.exit(failed === 0 ? 0 : 1);
