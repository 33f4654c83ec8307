// Validates Kubernetes custom objects against the upstream CRD schemas that the pinned
// @kubernetes-models packages (package.json) ship as compiled validators.
//
//   node tests/crds/validate.mjs < objects.json   ->   [[error, ...], ...] (one list per object)
//
// Input: a JSON list of objects. Output: a JSON list, one list of error strings per object
// ("/json/pointer: message"); an empty list means the object is valid.
//
// The compiled validators check types, enums, patterns, required fields and bounds, but
// accept unknown fields, which a real API server prunes from a structural schema (so the
// setting silently does nothing). To report those, each field of the object is replaced
// in turn by a value no schema type accepts (a Symbol): a field the schema knows fails at
// its own path; a field the schema does not know passes, and is reported as unknown.

// apiVersion group -> the package that has its models.
const PACKAGES = {
  "keda.sh": "@kubernetes-models/keda",
  "eventing.keda.sh": "@kubernetes-models/keda",
  "karpenter.sh": "@kubernetes-models/karpenter",
  "karpenter.k8s.aws": "@kubernetes-models/karpenter",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};
const UNKNOWN_PROBE = Symbol("unknown-field-probe");

async function modelFor(apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) return null;
  try {
    return (await import(`${pkg}/${group}/${version}/${kind}`))[kind] ?? null;
  } catch {
    return null;
  }
}

function schemaErrors(Model, obj) {
  try {
    new Model(obj).validate();
    return [];
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    return error.errors;
  }
}

const pointer = (path) => "/" + path.map((p) => String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("/");

function withValue(obj, path, value) {
  const copy = structuredClone(obj);
  let node = copy;
  for (const step of path.slice(0, -1)) node = node[step];
  node[path.at(-1)] = value;
  return copy;
}

function unknownFields(Model, obj) {
  const unknown = [];
  const walk = (node, path) => {
    const keys = Array.isArray(node) ? node.keys() : Object.keys(node);
    for (const key of keys) {
      const here = [...path, key];
      // apiVersion/kind are fixed by the model class; metadata is Kubernetes' ObjectMeta.
      if (path.length === 0 && ["apiVersion", "kind", "metadata"].includes(key)) continue;
      const where = pointer(here);
      const probed = schemaErrors(Model, withValue(obj, here, UNKNOWN_PROBE));
      if (!probed.some((e) => e.instancePath === where)) {
        unknown.push(`${where}: unknown field (not in the CRD schema; the API server would drop it)`);
      } else if (node[key] !== null && typeof node[key] === "object") {
        walk(node[key], here);
      }
    }
  };
  walk(obj, []);
  return unknown;
}

async function check(obj) {
  const Model = await modelFor(obj.apiVersion, obj.kind);
  if (!Model) return [`no CRD schema for ${obj.apiVersion} ${obj.kind} (add its package to tests/crds)`];
  const errors = schemaErrors(Model, obj).map((e) => `${e.instancePath || "/"}: ${e.message}`);
  return [...errors, ...unknownFields(Model, obj)];
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const obj of JSON.parse(input)) results.push(await check(obj));
process.stdout.write(JSON.stringify(results));
