// A yarn-locked app: podcell sees yarn.lock and installs with
// yarn install --frozen-lockfile (yarn through corepack).
const polka = require("polka");
const ms = require("ms");

polka()
  .get("/", (req, res) => res.end(`yarn app: ${ms(60000)} on polka ${require("polka/package.json").version}`))
  .listen(Number(process.env.PORT), () => console.log(`yarn app listening on ${process.env.PORT}`));
