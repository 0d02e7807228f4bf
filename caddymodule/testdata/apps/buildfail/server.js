require("http").createServer((req, res) => res.end("never built")).listen(Number(process.env.PORT));
