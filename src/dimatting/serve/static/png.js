// PNG in and out of the page, exactly: trimaps and alphas are data, not pictures.
//
// The browser's canvas cannot write a grayscale PNG (toBlob makes RGBA), so encodeGrayPng builds one:
// filter 0 on every row, zlib by the browser's own CompressionStream. decodePixels reads a PNG's pixels
// with colour management and premultiplication turned off, so 0/128/255 stay 0/128/255 and an alpha
// channel comes back as stored.

const SIGNATURE = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(parts) {
  let c = 0xffffffff;
  for (const bytes of parts) {
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const head = new Uint8Array(8);
  const view = new DataView(head.buffer);
  view.setUint32(0, data.length);
  const name = new TextEncoder().encode(type);
  head.set(name, 4);
  const tail = new Uint8Array(4);
  new DataView(tail.buffer).setUint32(0, crc32([name, data]));
  return [head, data, tail];
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A Blob holding an 8-bit grayscale PNG of `values` (Uint8Array, width * height, row-major). */
export async function encodeGrayPng(width, height, values) {
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y++) {
    raw.set(values.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8); // 8 bits, grayscale, deflate, filter method 0, no interlace
  const parts = [SIGNATURE, ...chunk("IHDR", header), ...chunk("IDAT", await deflate(raw)),
    ...chunk("IEND", new Uint8Array(0))];
  return new Blob(parts, { type: "image/png" });
}

/** An ImageBitmap of a PNG Blob, pixels as stored (no colour conversion, no premultiplied alpha). */
export function bitmapOf(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

/** The RGBA ImageData of an ImageBitmap. Gray and opaque pixels come back exactly; so does alpha. */
export function pixelsOf(bitmap) {
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

/** One channel (0 R, 3 A) of an ImageData as a Uint8Array. */
export function channel(imageData, index) {
  const out = new Uint8Array(imageData.width * imageData.height);
  const data = imageData.data;
  for (let i = 0, j = index; i < out.length; i++, j += 4) out[i] = data[j];
  return out;
}
