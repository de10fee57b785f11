import * as path from 'path';
import { CONTRACT } from './contract';

/**
 * The handler entry TorchServe calls for every batch of requests, as TS_DEFAULT_SERVICE_HANDLER names it:
 * `<module>:<function>` (pytorch/serve v0.11.0 `ts/model_loader.py` splits it at the first ':'), here
 * `inference:handle`. It replaces the toolkit's default handler; the toolkit still starts TorchServe.
 */
export const SERVICE_HANDLER = `${path.parse(CONTRACT.endpoint.handlerScript).name}:${CONTRACT.endpoint.serviceHandlerFunction}`;
