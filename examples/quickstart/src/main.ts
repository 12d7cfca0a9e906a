import { layerFromBytes, digestOf } from '@lading/core';

const layer = layerFromBytes(new Uint8Array(1024));
console.log(await layer.digest(), digestOf('hello'));
