// The build step (package.json scripts.build): renders src/ into dist/,
// which only the start script reads. No dist/ is committed.
const fs = require("fs");
const path = require("path");

const root = path.join(__dirname, "..");
const page = fs.readFileSync(path.join(root, "src/index.html"), "utf8").replace("{{builder}}", "npm run build");
fs.mkdirSync(path.join(root, "dist"), { recursive: true });
fs.writeFileSync(path.join(root, "dist/index.html"), page);
console.log("built dist/index.html");
