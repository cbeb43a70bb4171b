// wukongimjssdk 1.0.4 ships ES modules in lib/*.js without "type": "module"
// and imports its own files without the ".js" extension: Node needs these two
// hooks to load it unchanged.
const sdkLib = '/node_modules/wukongimjssdk/lib/';

export async function resolve(specifier, context, next) {
    if (context.parentURL?.includes(sdkLib) && specifier.startsWith('./') && !specifier.endsWith('.js')) {
        return next(specifier + '.js', context);
    }
    return next(specifier, context);
}

export async function load(url, context, next) {
    if (url.includes(sdkLib)) return next(url, { ...context, format: 'module' });
    return next(url, context);
}
