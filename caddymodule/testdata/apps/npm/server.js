// An npm app with a dependency from the registry (polka, a small Express-like
// router), locked by package-lock.json: podcell installs it with npm ci.
const polka = require("polka");
const version = require("polka/package.json").version;

polka()
  .get("/", (req, res) => res.end(`npm app on polka ${version}`))
  .listen(Number(process.env.PORT), () => console.log(`npm app listening on ${process.env.PORT}`));
