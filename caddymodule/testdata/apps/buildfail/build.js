// A build that fails, as a type check or a bundler does.
console.error("build.js: src/index.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.");
process.exit(1);
