// A dependency-free web app: answers GET / with its message, on $PORT.
const http = require("http");
const message = require("./message.json").message;
http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(message);
  })
  .listen(Number(process.env.PORT || 8080), "0.0.0.0");
