// Validates Kubernetes manifests against the Kubernetes OpenAPI schemas
// that the npm package kubernetes-models ships (types, enums, required
// fields, formats), and rejects fields the schemas do not know (typos such
// as "readinesProbe" or "defaultmode"), like kubeconform -strict.
// Then checks what ntsd's manifests promise (policy() below).
// Usage: node validate.js FILE.yaml...   Exit status 1 on any problem.
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

let problems = 0;
const fail = (where, msg) => { problems++; console.log(`FAIL ${where}: ${msg}`); };

// apiVersion + kind -> the model module, e.g. kubernetes-models/apps/v1/Deployment.
function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return `kubernetes-models/${group ? group + '/' : ''}${version}/${kind}`;
}

// Field names per interface, read from the package's .d.ts files:
//   export interface IContainer { "name": string; "env"?: Array<IIoK8s...EnvVar>; ... }
const dtsCache = new Map();
function readDts(file) {
  if (dtsCache.has(file)) return dtsCache.get(file);
  const text = fs.readFileSync(file, 'utf8');
  const imports = new Map();
  for (const m of text.matchAll(/import \{ ([^}]+) \} from "([^"]+)";/g))
    for (const name of m[1].split(',').map((s) => s.trim()))
      imports.set(name, m[2]);
  const m = text.match(/export interface (\w+)(?: extends \w+)? \{\n([\s\S]*?)\n\}/);
  const fields = new Map();
  if (m) {
    for (const line of m[2].split('\n')) {
      // Multi-line types (maps: "labels"?: {) start on the field's line.
      const f = line.match(/^ {4}"([^"]+)"\??: (.*?);?$/);
      if (f) fields.set(f[1], f[2]);
    }
  }
  const info = { file, imports, fields: m ? fields : null };
  dtsCache.set(file, info);
  return info;
}
function resolveImport(fromFile, spec) {
  const base = spec.startsWith('.') ? path.resolve(path.dirname(fromFile), spec)
    : require.resolve(spec).replace(/\.js$/, '');
  return base.replace(/\.js$/, '') + '.d.ts';
}
// Walks |data| against interface file |dts|: unknown keys are errors.
function strict(data, dts, where) {
  const info = readDts(dts);
  if (!info.fields || data === null || typeof data !== 'object' || Array.isArray(data)) return;
  for (const [key, value] of Object.entries(data)) {
    if (!info.fields.has(key)) {
      fail(where, `unknown field "${key}"`);
      continue;
    }
    const type = info.fields.get(key);
    let t = type.match(/^(?:Array<)?(IIo\w+)>?$/);
    if (!t) continue; // scalars, enums, maps, inline types
    const file = info.imports.has(t[1]) ? resolveImport(dts, info.imports.get(t[1])) : null;
    if (!file || !fs.existsSync(file)) continue;
    if (type.startsWith('Array<')) {
      if (Array.isArray(value)) value.forEach((v, i) => strict(v, file, `${where}.${key}[${i}]`));
    } else {
      strict(value, file, `${where}.${key}`);
    }
  }
}

// What every ntsd workload here must do (README.md explains why).
function policy(obj, where) {
  const pod = obj.spec && obj.spec.template && obj.spec.template.spec;
  if (!pod) return;
  const secretVolumes = new Map();
  for (const v of pod.volumes || [])
    if (v.secret) {
      secretVolumes.set(v.name, v.secret.secretName);
      if (v.secret.defaultMode !== 0o400)
        fail(where, `secret volume ${v.name}: defaultMode must be 0400`);
    }
  for (const c of pod.containers || []) {
    const w = `${where} container ${c.name}`;
    const sc = c.securityContext || {};
    const caps = (sc.capabilities || {});
    if ((caps.add || []).some((x) => /^(CAP_)?SYS_TIME$/i.test(x)))
      fail(w, 'never SYS_TIME: pods share the node clock, ntsd only serves it');
    if (!(caps.drop || []).includes('ALL')) fail(w, 'capabilities must drop ALL');
    if (sc.allowPrivilegeEscalation !== false) fail(w, 'allowPrivilegeEscalation must be false');
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      const cmd = c[probe] && c[probe].exec && c[probe].exec.command;
      if (!cmd || !/ntsctl$/.test(cmd[0]) || cmd[1] !== 'health')
        fail(w, `${probe} must run "ntsctl health"`);
    }
    const env = new Map((c.env || []).map((e) => [e.name, e.value]));
    const secretFile = env.get('NTS_KEY_SECRET_FILE');
    if (!secretFile) { fail(w, 'NTS_KEY_SECRET_FILE is not set'); continue; }
    for (const f of secretFile.split(',')) {
      const m = (c.volumeMounts || []).find((vm) => f.startsWith(vm.mountPath + '/'));
      if (!m || secretVolumes.get(m.name) !== 'ntsd-master-secret' || m.readOnly !== true)
        fail(w, `${f} is not in a read-only mount of Secret ntsd-master-secret`);
    }
    if (env.get('NTS_ROTATE') === undefined) fail(w, 'set NTS_ROTATE: the same on every instance');
  }
}

for (const file of process.argv.slice(2)) {
  // YAML 1.1, as Kubernetes reads manifests: defaultMode 0400 is octal.
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'), { version: '1.1' });
  docs.forEach((doc, i) => {
    const where = `${path.basename(file)}#${i + 1}`;
    if (doc.errors.length) { fail(where, doc.errors.map((e) => e.message).join('; ')); return; }
    const obj = doc.toJS();
    if (obj === null) return; // empty document
    if (!obj.apiVersion || !obj.kind) { fail(where, 'no apiVersion or kind'); return; }
    const label = `${where} ${obj.kind}/${(obj.metadata || {}).name}`;
    const before = problems;
    let Model;
    try {
      Model = require(modelPath(obj.apiVersion, obj.kind))[obj.kind];
    } catch (e) {
      fail(label, `unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
      return;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      fail(label, e.message);
    }
    const dts = require.resolve(modelPath(obj.apiVersion, obj.kind)).replace(/\.js$/, '.d.ts');
    strict(obj, dts, label);
    policy(obj, label);
    if (problems === before) console.log(`ok   ${label}`);
  });
}
process.exit(problems ? 1 : 0);
