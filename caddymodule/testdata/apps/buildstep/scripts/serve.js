// The start script (package.json scripts.start): serves what the build made.
const fs = require("fs");
const http = require("http");
const path = require("path");

const page = fs.readFileSync(path.join(__dirname, "../dist/index.html"));
http
  .createServer((req, res) => {
    res.setHeader("Content-Type", "text/html");
    res.end(page);
  })
  .listen(Number(process.env.PORT));
