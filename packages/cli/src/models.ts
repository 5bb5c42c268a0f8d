// The model packages `vl` knows: importing each registers it in @vl/core's registry (their declared
// side effect). A new model package adds one line here and a dependency in package.json.
import '@vl/albef';
import '@vl/beit3';
import '@vl/blip';
import '@vl/coca';
import '@vl/vlmo';
