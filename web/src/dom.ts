// Building and updating DOM without a framework: `h` makes elements, `reconcile` keeps a
// keyed list's elements (reused, reordered, removed) so live updates do not rebuild rows
// under an operator's pointer.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {},
                                                         ...children: Child[]):
    HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(name.replace(/^on/, ""), value);
    } else if (name === "class") {
      el.className = String(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c == null || c === false) continue;
    el.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  }
}

/** Set text only when it changed (no needless layout on every update). */
export function text(el: Element | null | undefined, value: string): void {
  if (el && el.textContent !== value) el.textContent = value;
}

/** Set (or remove, for null) an attribute only when it changed. */
export function attr(el: Element | null | undefined, name: string,
                     value: string | null): void {
  if (!el) return;
  if (value === null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== value) {
    el.setAttribute(name, value);
  }
}

const keyed = new WeakMap<Element, Map<string, HTMLElement>>();

/** Make `parent`'s children the items' elements, in order: existing ones (by key) updated
 * in place, new ones created, the others removed. */
export function reconcile<T>(parent: Element, items: readonly T[], key: (item: T) => string,
                             create: (item: T) => HTMLElement,
                             update: (el: HTMLElement, item: T) => void): void {
  const before = keyed.get(parent) ?? new Map<string, HTMLElement>();
  const after = new Map<string, HTMLElement>();
  const order: HTMLElement[] = [];
  for (const item of items) {
    const k = key(item);
    if (after.has(k)) continue;
    let el = before.get(k);
    if (!el) el = create(item);
    update(el, item);
    after.set(k, el);
    order.push(el);
  }
  for (const [k, el] of before) if (!after.has(k)) el.remove();
  // Move only what is out of place (moving an element under the pointer loses hover/focus).
  let cursor = parent.firstElementChild;
  for (const el of order) {
    if (cursor === el) {
      cursor = cursor.nextElementSibling;
    } else {
      parent.insertBefore(el, cursor);
    }
  }
  keyed.set(parent, after);
}

/** Runs `fn` at most once per animation frame however often it is asked for (several
 * updates in one frame draw once); `cancel` on destroy. */
export function frameThrottle(fn: () => void): { request(): void; cancel(): void } {
  let handle: number | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const run = () => {
    if (handle !== null) cancelAnimationFrame(handle);
    if (timer !== null) clearTimeout(timer);
    handle = null;
    timer = null;
    fn();
  };
  return {
    request() {
      if (handle !== null) return;
      handle = requestAnimationFrame(run);
      // A hidden tab gets no frames: draw within a second anyway (it is seen when shown).
      timer = setTimeout(run, 1000);
    },
    cancel() {
      if (handle !== null) cancelAnimationFrame(handle);
      if (timer !== null) clearTimeout(timer);
      handle = null;
      timer = null;
    },
  };
}
