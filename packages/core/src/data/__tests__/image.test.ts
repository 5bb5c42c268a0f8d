// Image decode/transform tests: formats, crops, flip, normalisation, pixel limit, corrupt input, NCHW.
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { IMAGE_NORMS, imagesToTensor, normalizeToChw, randomResizedCropBox } from '../image.js';
import { decodeImage, preprocessImage, transformImage } from '../../node/image-decode.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** A w×h RGB image whose left half is red and right half blue (w even). */
function halves(w: number, h: number): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      if (x < w / 2) px[o] = 255;
      else px[o + 2] = 255;
    }
  }
  return px;
}

/** A w×h image where pixel (x, y) = (x, y, 7): every pixel is identifiable after a crop or flip. */
function coords(w: number, h: number): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set([x, y, 7], (y * w + x) * 3);
  return px;
}

const raw = (data: Buffer, width: number, height: number, channels: 1 | 3 | 4 = 3) => sharp(data, { raw: { width, height, channels } });

// CRC-32 (PNG chunk checksums) so the test can hand-craft a PNG header.
function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A ~100-byte PNG claiming 100000×100000 pixels (10 gigapixels): a decompression bomb's header. */
function bombPng(): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100_000, 0);
  ihdr.writeUInt32BE(100_000, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1000))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('decodeImage', () => {
  it('decodes PNG and lossless WebP exactly, JPEG closely', async () => {
    const px = coords(12, 10);
    const png = await raw(px, 12, 10).png().toBuffer();
    const webp = await raw(px, 12, 10).webp({ lossless: true }).toBuffer();
    for (const file of [png, webp]) {
      const img = await decodeImage(file);
      expect([img.width, img.height]).toEqual([12, 10]);
      expect(Buffer.from(img.data).equals(px)).toBe(true);
    }
    const jpg = await decodeImage(await raw(halves(16, 16), 16, 16).jpeg({ quality: 95 }).toBuffer());
    // Pixel (2, 8) is deep in the red half: JPEG keeps it within a few levels of (255, 0, 0).
    const o = (8 * 16 + 2) * 3;
    expect(jpg.data[o]).toBeGreaterThan(240);
    expect(jpg.data[o + 2]).toBeLessThan(15);
  });

  it('turns grey and RGBA images into 3-channel RGB (alpha dropped, not composited)', async () => {
    const grey = await decodeImage(
      await raw(Buffer.from([0, 128, 255, 64]), 2, 2, 1)
        .png()
        .toBuffer(),
    );
    expect(Array.from(grey.data)).toEqual([0, 0, 0, 128, 128, 128, 255, 255, 255, 64, 64, 64]);
    const rgba = await decodeImage(
      await raw(Buffer.from([10, 20, 30, 0, 40, 50, 60, 255]), 2, 1, 4)
        .png()
        .toBuffer(),
    );
    expect(Array.from(rgba.data)).toEqual([10, 20, 30, 40, 50, 60]);
  });

  it('refuses a decompression bomb from its header alone, with a typed error', async () => {
    const bomb = bombPng();
    expect(bomb.length).toBeLessThan(200);
    const t0 = performance.now();
    await expect(decodeImage(bomb, { subject: 'bomb.png' })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE', subject: 'bomb.png' });
    expect(performance.now() - t0).toBeLessThan(2000);
    const small = await raw(coords(20, 20), 20, 20).png().toBuffer();
    await expect(decodeImage(small, { maxPixels: 399 })).rejects.toThrow(/400 pixels exceeds the limit of 399/);
    await expect(decodeImage(small, { maxPixels: 400 })).resolves.toMatchObject({ width: 20 });
  });

  it('reports corrupt and truncated files as IMAGE_INVALID', async () => {
    await expect(decodeImage(Buffer.from('not an image at all'))).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
    const jpg = await raw(coords(64, 64), 64, 64).jpeg().toBuffer();
    await expect(decodeImage(jpg.subarray(0, Math.floor(jpg.length / 2)), { subject: 'cut.jpg' })).rejects.toMatchObject({
      code: 'IMAGE_INVALID',
      subject: 'cut.jpg',
    });
  });
});

describe('transforms', () => {
  it('squashes, or centre-crops after resizing the shorter side', async () => {
    const png = await raw(halves(8, 4), 8, 4).png().toBuffer();
    const squashed = await transformImage(png, { size: [2, 4], mode: 'squash' });
    expect([squashed.width, squashed.height]).toEqual([4, 2]);
    // Centre 4×4 of an 8×4 image: columns 2..5, red red blue blue (shorter side already 4: no resampling).
    const crop = await transformImage(png, { size: 4, mode: 'center-crop' });
    const row = Array.from(crop.data.subarray(0, 12));
    expect(row).toEqual([255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255]);
  });

  it('random-resized-crop follows torchvision: in bounds, area in range, seeded', () => {
    const rng = new Rng(3);
    for (let i = 0; i < 200; i++) {
      const b = randomResizedCropBox(640, 480, rng, [0.5, 1]);
      expect(b.left).toBeGreaterThanOrEqual(0);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.left + b.width).toBeLessThanOrEqual(640);
      expect(b.top + b.height).toBeLessThanOrEqual(480);
      const area = (b.width * b.height) / (640 * 480);
      expect(area).toBeGreaterThan(0.49);
      expect(area).toBeLessThan(1.01);
      expect(b.width / b.height).toBeGreaterThan(0.74);
      expect(b.width / b.height).toBeLessThan(1.34);
    }
    expect(randomResizedCropBox(640, 480, new Rng(9))).toEqual(randomResizedCropBox(640, 480, new Rng(9)));
    // A 10:1 strip can never fit an aspect within 3/4..4/3 at ≥ 90% area: the centre-crop fallback
    // takes the full height and width = round(10 × 4/3) = 13, centred at (100 - 13) // 2 = 43.
    expect(randomResizedCropBox(100, 10, new Rng(1), [0.9, 1])).toEqual({ left: 43, top: 0, width: 13, height: 10 });
  });

  it('crops the pixels the box names and flips with probability 1/2', async () => {
    const png = await raw(coords(32, 24), 32, 24).png().toBuffer();
    // With scale (1, 1) and ratio (4/3, 4/3) the box is the whole 32×24 image; output at full size
    // so no resampling happens and every pixel keeps its coordinates.
    let flipped = 0;
    for (let seed = 0; seed < 40; seed++) {
      const img = await transformImage(png, {
        size: [24, 32],
        mode: 'random-resized-crop',
        scale: [1, 1],
        ratio: [4 / 3, 4 / 3],
        flip: true,
        rng: new Rng(seed),
      });
      const first = img.data[0];
      expect(first === 0 || first === 31).toBe(true);
      if (first === 31) {
        flipped++;
        expect(Array.from(img.data.subarray(0, 6))).toEqual([31, 0, 7, 30, 0, 7]);
      }
    }
    expect(flipped).toBeGreaterThan(10);
    expect(flipped).toBeLessThan(30);
    await expect(transformImage(png, { size: 8, flip: true })).rejects.toThrow(/needs an rng/);
  });

  it('normalises with the model mean/std into CHW float32', async () => {
    const img = { data: new Uint8Array([255, 0, 128, 0, 255, 64]), width: 2, height: 1 };
    const out = normalizeToChw(img, IMAGE_NORMS.clip);
    const { mean, std } = IMAGE_NORMS.clip;
    const expected = [
      (1 - mean[0]) / std[0],
      (0 - mean[0]) / std[0], // R plane: 255, 0
      (0 - mean[1]) / std[1],
      (1 - mean[1]) / std[1], // G plane: 0, 255
      (128 / 255 - mean[2]) / std[2],
      (64 / 255 - mean[2]) / std[2], // B plane
    ];
    expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 5));
    expect(out[0]).toBeCloseTo(1.9303, 4);
    const inc = normalizeToChw(img, IMAGE_NORMS.inception);
    expect(Array.from(inc.subarray(0, 2))).toEqual([1, -1]);
  });

  it('stacks images into NCHW tensors without leaking', async () => {
    const png = await raw(halves(8, 8), 8, 8).png().toBuffer();
    const a = await preprocessImage(png, { size: 4, norm: IMAGE_NORMS.inception });
    const before = tf.memory().numTensors;
    const t = imagesToTensor([a, a], 4, 4);
    expect(t.shape).toEqual([2, 3, 4, 4]);
    const v = await t.data();
    // Image 1, channel 0 (red), pixel (0, 0) is red → +1; channel 2 (blue) there → -1.
    expect(v[48]).toBeCloseTo(1, 5);
    expect(v[48 + 32]).toBeCloseTo(-1, 5);
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => imagesToTensor([new Float32Array(3)], 4, 4)).toThrow(/expected 3×4×4/);
  });
});
