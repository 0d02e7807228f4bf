// The monorepo's other app: podcell must not build this one for root apps/api.
require("http").createServer((req, res) => res.end("web, not api")).listen(Number(process.env.PORT));
