// Audio in the browser: decoding and resampling a file, and capturing the microphone.

import { PageError, microphoneError } from "./errors.js";

/**
 * Decodes an audio file and mixes it to mono at `rateHz` (48 kHz when 0).
 * Returns {samples, sampleRateHz, buffer}: `buffer` is the decoded AudioBuffer, for playback.
 */
export async function decodeFile(file, rateHz) {
  const bytes = await file.arrayBuffer();
  // decodeAudioData resamples to its context's rate: decode straight at the model's.
  const targetRate = rateHz > 0 ? rateHz : 48000;
  let buffer;
  try {
    buffer = await new OfflineAudioContext(1, 1, targetRate).decodeAudioData(bytes);
  } catch (error) {
    throw new PageError("DECODE", "", String(error));
  }
  const length = Math.max(1, Math.ceil(buffer.duration * targetRate));
  // An offline render does the resampling and the down-mix (stereo to mono is (L + R) / 2).
  const context = new OfflineAudioContext(1, length, targetRate);
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(context.destination);
  source.start();
  const rendered = await context.startRendering();
  return { samples: rendered.getChannelData(0), sampleRateHz: targetRate, buffer };
}

/** Plays a decoded AudioBuffer through the speakers; returns a function that stops it. */
export function play(buffer) {
  const context = new AudioContext();
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(context.destination);
  source.start();
  return () => {
    try {
      source.stop();
    } catch {
      // Already over.
    }
    context.close();
  };
}

/** The microphone, captured as mono float32 blocks handed to `onSamples`. */
export class Microphone {
  constructor(onSamples) {
    this.onSamples = onSamples;
    this.context = null;
    this.stream = null;
  }

  /** Asks for the microphone and starts capturing; returns the capture rate in Hz. */
  async start() {
    if (!window.isSecureContext) throw new PageError("MIC_INSECURE", "");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new PageError("MIC_UNSUPPORTED", "");
    }
    try {
      // Music, not a call: no echo cancelling, noise suppression or gain riding.
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      throw microphoneError(error);
    }
    this.context = new AudioContext();
    await this.context.resume();
    const source = this.context.createMediaStreamSource(this.stream);
    // A silent path to the speakers keeps the capture node pulled by the render graph.
    const mute = this.context.createGain();
    mute.gain.value = 0;
    mute.connect(this.context.destination);
    if (this.context.audioWorklet) {
      await this.context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
      const node = new AudioWorkletNode(this.context, "mozart-capture");
      node.port.onmessage = (event) => this.onSamples(event.data);
      source.connect(node).connect(mute);
    } else {
      // Older browsers: the deprecated ScriptProcessorNode does the same on the main thread.
      const node = this.context.createScriptProcessor(4096, 1, 1);
      node.onaudioprocess = (event) => this.onSamples(new Float32Array(event.inputBuffer.getChannelData(0)));
      source.connect(node).connect(mute);
    }
    return this.context.sampleRate;
  }

  /** Stops capturing and lets the browser's microphone indicator go off. */
  async stop() {
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) await this.context.close();
    this.stream = null;
    this.context = null;
  }
}
